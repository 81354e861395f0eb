// Package metrics writes CloudWatch embedded metric format (EMF) lines: one
// JSON line per invocation, which CloudWatch Logs turns into metrics with no
// API calls.
package metrics

import (
	"encoding/json"
	"io"
	"sort"
	"sync"
	"time"
)

// Namespace of every wsgate metric.
const Namespace = "wsgate"

// Units.
const (
	Count        = "Count"
	Milliseconds = "Milliseconds"
	Bytes        = "Bytes"
)

// Set collects one invocation's metrics and properties.
type Set struct {
	mu     sync.Mutex
	dims   map[string]string
	values map[string]float64
	units  map[string]string
	props  map[string]any
	now    func() time.Time
}

// New starts a set with dimensions (e.g. Stage, Function).
func New(dims map[string]string) *Set {
	return &Set{dims: dims, values: map[string]float64{}, units: map[string]string{}, props: map[string]any{}, now: time.Now}
}

// Add adds v to a metric.
func (s *Set) Add(name string, v float64, unit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[name] += v
	s.units[name] = unit
}

// Duration records a duration metric in milliseconds (replacing any earlier
// value of the same name).
func (s *Set) Duration(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[name] = float64(d.Microseconds()) / 1000
	s.units[name] = Milliseconds
}

// Property adds a searchable, non-metric field (an event id, say).
func (s *Set) Property(k string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.props[k] = v
}

// Value returns a metric's current value.
func (s *Set) Value(name string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[name]
}

// Write emits the set as one EMF line. Nothing is written for an empty set.
func (s *Set) Write(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.values) == 0 {
		return nil
	}
	dimNames := make([]string, 0, len(s.dims))
	for k := range s.dims {
		dimNames = append(dimNames, k)
	}
	sort.Strings(dimNames)
	names := make([]string, 0, len(s.values))
	for k := range s.values {
		names = append(names, k)
	}
	sort.Strings(names)
	defs := make([]map[string]string, len(names))
	for i, n := range names {
		defs[i] = map[string]string{"Name": n, "Unit": s.units[n]}
	}
	line := map[string]any{}
	for k, v := range s.props {
		line[k] = v
	}
	for k, v := range s.dims {
		line[k] = v
	}
	for k, v := range s.values {
		line[k] = v
	}
	line["_aws"] = map[string]any{
		"Timestamp": s.now().UnixMilli(),
		"CloudWatchMetrics": []map[string]any{{
			"Namespace":  Namespace,
			"Dimensions": [][]string{dimNames},
			"Metrics":    defs,
		}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
