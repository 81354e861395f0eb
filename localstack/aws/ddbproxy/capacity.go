package ddbproxy

import (
	"math"
	"slices"
	"sync"
	"time"
)

// DynamoDB's per-partition ceilings: "A single partition can support a
// maximum of 3,000 read capacity units (RCUs) or 1,000 write capacity
// units (WCUs)", in both capacity modes, whatever the burst or adaptive
// capacity: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html
// (and .../HowItWorks.Partitions.html). The proxy holds every partition key
// value to them, the weakest promise: AWS may put one key on a partition
// that others share, never give one key more.
const (
	ReadCeiling  = 3000.0
	WriteCeiling = 1000.0
)

// hotKeys is how many keys CapacityStats lists.
const hotKeys = 50

// CapacityStats is what the proxy measured of each partition key's load.
type CapacityStats struct {
	// Scale divides AWS's ceilings (0: ceilings off, units still counted).
	Scale float64 `json:"scale"`
	// ReadCeiling and WriteCeiling are the units a second one scaled key
	// may consume here (AWS's times Scale); 0 when off. Keys that are not
	// scaled (Options.ScaledKeys) are held to AWS's own.
	ReadCeiling  float64 `json:"read_ceiling"`
	WriteCeiling float64 `json:"write_ceiling"`
	ReadUnits    float64 `json:"read_units"`
	WriteUnits   float64 `json:"write_units"`
	// Throttled counts requests (or batch entries, transaction items)
	// refused for a key over its ceiling.
	Throttled int64 `json:"throttled"`
	// Keys are the hottest keys, by their peak second's share of their
	// own ceiling (of AWS's ceiling when off), hottest first.
	Keys []KeyCapacity `json:"keys"`
}

// KeyCapacity is one partition key's load.
type KeyCapacity struct {
	Table string `json:"table"`
	// Index is the global secondary index whose key this is ("" for the
	// table's own partition key).
	Index string `json:"index,omitempty"`
	// Key is the partition key's value ("(scan)" for Scans, which read
	// every partition and are not held to one key's ceiling).
	Key        string  `json:"key"`
	ReadUnits  float64 `json:"read_units"`
	WriteUnits float64 `json:"write_units"`
	// PeakRead and PeakWrite are the most units consumed in one second
	// (whole seconds of the wall clock).
	PeakRead  float64 `json:"peak_read_per_second"`
	PeakWrite float64 `json:"peak_write_per_second"`
	Throttled int64   `json:"throttled"`
	// Scaled: the key's load grows with the modelled audience, and its
	// ceilings are AWS's times Scale (Options.ScaledKeys); the others
	// keep AWS's own.
	Scaled bool `json:"scaled"`
}

// partition is a partition key value: a table's or a global index's.
type partition struct {
	table, index string
	key          string // display form of the value
	id           string // table, index and typed value
	scan         bool   // a Scan's pseudo key: counted, never throttled
}

// bucket is a token bucket refilled at the ceiling's rate, holding one
// second's worth: a request is refused while it is empty, and may overdraw
// it (DynamoDB charges a request what it read or wrote, known afterwards).
type bucket struct {
	level float64
	at    time.Time
}

func (b *bucket) refill(now time.Time, rate float64) {
	if b.at.IsZero() {
		b.level, b.at = rate, now
		return
	}
	b.level = min(rate, b.level+rate*now.Sub(b.at).Seconds())
	b.at = now
}

// meterWindow tracks the units of the current wall-clock second and the
// peak of any second.
type meterWindow struct {
	second int64
	units  float64
	peak   float64
}

func (m *meterWindow) add(now time.Time, units float64) {
	s := now.Unix()
	if s != m.second {
		m.second, m.units = s, 0
	}
	m.units += units
	m.peak = max(m.peak, m.units)
}

type keyLoad struct {
	p             partition
	scaled        bool // held to the scaled ceilings
	read, write   bucket
	readW, writeW meterWindow
	readU, writeU float64
	throttled     int64
}

// capacity is the proxy's accounting of consumed units per partition key,
// and its ceilings.
type capacity struct {
	scale     float64 // >0: ceilings on
	readRate  float64 // a scaled key's ceilings
	writeRate float64
	scaledKey func(pk string) bool // nil: every key
	now       func() time.Time
	mu        sync.Mutex
	keys      map[string]*keyLoad
	readU     float64
	writeU    float64
	throttled int64
	suspended int // SuspendCeilings in force
}

func newCapacity(scale float64, scaledKey func(string) bool) *capacity {
	c := &capacity{keys: map[string]*keyLoad{}, now: time.Now, scaledKey: scaledKey}
	if scale > 0 {
		c.scale, c.readRate, c.writeRate = scale, ReadCeiling*scale, WriteCeiling*scale
	}
	return c
}

func (c *capacity) load(p partition) *keyLoad {
	k := c.keys[p.id]
	if k == nil {
		k = &keyLoad{p: p, scaled: c.isScaled(p)}
		c.keys[p.id] = k
	}
	return k
}

// isScaled reports whether p's load grows with the modelled audience.
func (c *capacity) isScaled(p partition) bool {
	return !p.scan && (c.scaledKey == nil || c.scaledKey(p.key))
}

// rates are k's ceilings, units a second: the scaled ones, or AWS's for a
// key whose load does not grow with the audience.
func (c *capacity) rates(k *keyLoad) (read, write float64) {
	if k.scaled {
		return c.readRate, c.writeRate
	}
	return ReadCeiling, WriteCeiling
}

// modelScale is the scale a Query of p is charged at (queryUnits), 0
// when its units are DynamoDB Local's own: ceilings off or at AWS's, or a
// key that is not scaled.
func (c *capacity) modelScale(p partition) float64 {
	if c.scale <= 0 || c.scale >= 1 || !c.isScaled(p) {
		return 0
	}
	return c.scale
}

// suspend lifts every ceiling until the returned func is called (once);
// units are still counted.
func (c *capacity) suspend() (resume func()) {
	c.mu.Lock()
	c.suspended++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.suspended--
			c.mu.Unlock()
		})
	}
}

// admit reports, for each of parts (to be written when write), whether its
// key may take a request now: false while its bucket is empty. Refusals
// are counted.
func (c *capacity) admit(parts []partition, write bool) []bool {
	ok := make([]bool, len(parts))
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for i, p := range parts {
		ok[i] = true
		if c.scale <= 0 || p.scan || c.suspended > 0 {
			continue
		}
		k := c.load(p)
		rr, wr := c.rates(k)
		b, rate := &k.read, rr
		if write {
			b, rate = &k.write, wr
		}
		b.refill(now, rate)
		if b.level <= 0 {
			ok[i] = false
			k.throttled++
			c.throttled++
		}
	}
	return ok
}

// charge takes units from p's bucket and counts them.
func (c *capacity) charge(p partition, read, write float64) {
	if read == 0 && write == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	k := c.load(p)
	held := c.scale > 0 && !p.scan && c.suspended == 0 // suspended: counted, not taken from the buckets
	rr, wr := c.rates(k)
	if read > 0 {
		k.readU += read
		c.readU += read
		k.readW.add(now, read)
		if held {
			k.read.refill(now, rr)
			k.read.level -= read
		}
	}
	if write > 0 {
		k.writeU += write
		c.writeU += write
		k.writeW.add(now, write)
		if held {
			k.write.refill(now, wr)
			k.write.level -= write
		}
	}
}

func (c *capacity) stats() CapacityStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := CapacityStats{
		Scale: c.scale, ReadCeiling: c.readRate, WriteCeiling: c.writeRate,
		ReadUnits: c.readU, WriteUnits: c.writeU, Throttled: c.throttled,
	}
	keys := make([]KeyCapacity, 0, len(c.keys))
	for _, k := range c.keys {
		keys = append(keys, KeyCapacity{
			Table: k.p.table, Index: k.p.index, Key: k.p.key,
			ReadUnits: k.readU, WriteUnits: k.writeU,
			PeakRead: k.readW.peak, PeakWrite: k.writeW.peak, Throttled: k.throttled,
			Scaled: k.scaled && c.scale > 0,
		})
	}
	// A key's heat is its peak second's share of its own ceiling.
	heat := func(k KeyCapacity) float64 {
		r, w := ReadCeiling, WriteCeiling
		if k.Scaled {
			r, w = c.readRate, c.writeRate
		}
		return max(k.PeakRead/r, k.PeakWrite/w)
	}
	slices.SortFunc(keys, func(a, b KeyCapacity) int {
		if d := heat(b) - heat(a); d != 0 {
			return int(math.Copysign(1, d))
		}
		return int(b.Throttled - a.Throttled)
	})
	s.Keys = keys[:min(len(keys), hotKeys)]
	return s
}

// reset zeroes what was counted (units, peaks, throttles) and keeps each
// key's bucket, so the ceilings hold across it.
func (c *capacity) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readU, c.writeU, c.throttled = 0, 0, 0
	for _, k := range c.keys {
		k.readU, k.writeU, k.throttled = 0, 0, 0
		k.readW, k.writeW = meterWindow{}, meterWindow{}
	}
}
