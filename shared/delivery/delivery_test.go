package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

func TestEncoder_EncodesEachFormOnce(t *testing.T) {
	it := Item{
		Topic: "telemetry.1", Seq: 7, ID: "e1", Time: time.Unix(1700000000, 0),
		Payload:    json.RawMessage(`{"telemetry":{"t":1,"h":2}}`),
		Attributes: filter.Attributes{"metrics": {"h", "t"}},
		Project:    filter.Projection{"metrics": "telemetry"},
	}
	e := NewEncoder(it)
	id := auth.Identity{Sub: "u"}
	raw1, ok, err := e.For(id, false, []filter.Set{nil})
	require.NoError(t, err)
	require.True(t, ok)
	raw2, _, _ := e.For(id, false, []filter.Set{nil})
	assert.Same(t, &raw1[0], &raw2[0], "the same bytes, not a second encoding")
	env, _, _ := e.For(id, true, []filter.Set{nil})
	assert.JSONEq(t, `{"type":"event","topic":"telemetry.1","seq":7,"id":"e1","time":"2023-11-14T22:13:20Z","data":{"telemetry":{"t":1,"h":2}}}`, string(env))
	trimmed, _, _ := e.For(id, false, []filter.Set{{"metrics": {"t"}}})
	assert.JSONEq(t, `{"telemetry":{"t":1}}`, string(trimmed))
	assert.Len(t, e.cache, 3)

	_, ok, _ = e.For(id, false, []filter.Set{{"metrics": {"x"}}})
	assert.False(t, ok, "a filter that rejects the event")
	it.Audience = &auth.Audience{Orgs: []string{"o"}}
	_, ok, _ = NewEncoder(it).For(id, false, []filter.Set{nil})
	assert.False(t, ok, "outside the audience")
}

// fakeHistory serves a topic whose last event lands a moment late.
type fakeHistory struct {
	cur     uint64
	entries []store.HistoryEntry
	late    *store.HistoryEntry
	reads   int
}

func (f *fakeHistory) CurrentSeq(context.Context, topic.Pattern) (uint64, error) { return f.cur, nil }
func (f *fakeHistory) History(_ context.Context, _ topic.Pattern, since uint64, limit int) ([]store.HistoryEntry, error) {
	f.reads++
	all := f.entries
	if f.late != nil && f.reads > 2 {
		all = append(all, *f.late)
	}
	var out []store.HistoryEntry
	for _, e := range all {
		if e.Seq > since && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}
func (f *fakeHistory) ConnectionSubscriptions(context.Context, string) ([]store.Subscription, error) {
	return nil, nil
}

func entry(seq uint64) store.HistoryEntry {
	return store.HistoryEntry{Seq: seq, ID: fmt.Sprint("e", seq), Payload: []byte(fmt.Sprintf(`{"n":%d}`, seq))}
}

func TestBuildReplay_WaitsForAnEventInFlightAndStepsOverSkips(t *testing.T) {
	late := entry(4)
	f := &fakeHistory{cur: 4, entries: []store.HistoryEntry{entry(2), {Seq: 3, Skip: true}}, late: &late}
	r, err := BuildReplay(context.Background(), f, store.Connection{}, topic.MustPattern("a.b"), 1, MaxReplay)
	require.NoError(t, err)
	assert.Equal(t, []string{`{"n":2}`, `{"n":4}`}, frames(r), "3 is skipped; 4 landed while we waited")
	assert.Equal(t, uint64(4), r.Last)

	gone := &fakeHistory{cur: 4, entries: []store.HistoryEntry{entry(2), entry(3)}}
	_, err = BuildReplay(context.Background(), gone, store.Connection{}, topic.MustPattern("a.b"), 1, MaxReplay)
	assert.ErrorIs(t, err, ErrHistoryExpired, "an event never kept")
	hole := &fakeHistory{cur: 4, entries: []store.HistoryEntry{entry(2), entry(4)}}
	_, err = BuildReplay(context.Background(), hole, store.Connection{}, topic.MustPattern("a.b"), 1, MaxReplay)
	assert.ErrorIs(t, err, ErrHistoryExpired, "a hole in the middle")
}

func frames(r Replay) []string {
	var out []string
	for _, f := range r.Frames {
		out = append(out, string(f))
	}
	return out
}
