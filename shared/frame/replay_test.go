package frame

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/event"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

var now = time.Unix(1_800_000_000, 0)

func clock() time.Time { return now }

// fakeHistory serves one topic's history; an entry in late lands after
// the given number of reads.
type fakeHistory struct {
	cur       uint64
	published time.Time
	entries   []store.HistoryEntry
	late      *store.HistoryEntry
	lateAfter int
	reads     int
	// allowance: what a reservation gets (-1: the minute is used up), and
	// what was given back.
	grant    int64
	reserved int
	returned []int64
	// buckets are the allowances reserved from, in order.
	buckets []store.ReplayBucket
}

func (f *fakeHistory) TopicSeq(context.Context, topic.Pattern) (store.TopicSeq, error) {
	return store.TopicSeq{Seq: f.cur, Published: f.published}, nil
}

func (f *fakeHistory) History(_ context.Context, _ topic.Pattern, since uint64, limit int) ([]store.HistoryEntry, error) {
	f.reads++
	all := f.entries
	if f.late != nil && f.reads > f.lateAfter {
		all = append(append([]store.HistoryEntry(nil), all...), *f.late)
		slices.SortFunc(all, func(a, b store.HistoryEntry) int { return cmp.Compare(a.Seq, b.Seq) })
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

func (f *fakeHistory) ReserveReplay(_ context.Context, b store.ReplayBucket, _ time.Time, n, _ int64) (store.ReplayReservation, error) {
	f.reserved++
	f.buckets = append(f.buckets, b)
	if f.grant < 0 {
		return store.ReplayReservation{}, store.ErrRateLimited
	}
	return store.ReplayReservation{Bytes: min(n, f.grant)}, nil
}

func (f *fakeHistory) ReturnReplay(_ context.Context, _ store.ReplayBucket, _ store.ReplayReservation, sent int64) error {
	f.returned = append(f.returned, sent)
	return nil
}

// entry is event seq of topic ab with a 10-byte payload.
func entry(seq uint64) store.HistoryEntry {
	return store.HistoryEntry{Event: event.Event{Topic: ab, ID: fmt.Sprint("e", seq), Payload: []byte(fmt.Sprintf(`{"n":%04d}`, seq))}, Seq: seq}
}

func entries(from, to uint64) []store.HistoryEntry {
	var out []store.HistoryEntry
	for s := from; s <= to; s++ {
		out = append(out, entry(s))
	}
	return out
}

// collect is a send that keeps the frames.
type collect []string

func (c *collect) send(f []byte) error { *c = append(*c, string(f)); return nil }

var ab = topic.MustPattern("a.b")

func replayer(f *fakeHistory, lim ReplayLimits) *Replayer {
	return NewReplayer(f, store.Connection{ID: "c1"}, lim, clock)
}

func TestReplay_StreamsInOrderWaitingForAnEventInFlight(t *testing.T) {
	late := entry(4)
	f := &fakeHistory{cur: 4, published: now.Add(-time.Second), entries: []store.HistoryEntry{entry(2), {Seq: 3, Skip: true}}, late: &late, lateAfter: 2}
	var got collect
	r, err := replayer(f, ReplayLimits{}).Replay(context.Background(), Request{Topic: ab, Since: 1}, got.send)
	require.NoError(t, err)
	assert.Equal(t, collect{`{"n":0002}`, `{"n":0004}`}, got, "3 is skipped; 4 landed while we waited")
	assert.Equal(t, Replayed{Last: 4, Frames: 2, Events: 3}, r)
}

// Events on a topic are numbered in parallel: a number drawn a moment
// ago (an event's, or an EventBridge redelivery's about to be marked
// skipped) may have no entry yet when a later one has. A resume waits for
// it rather than report the hole lost.
func TestReplay_WaitsForAHoleInFlightBeforeALaterEvent(t *testing.T) {
	late := store.HistoryEntry{Seq: 3, Skip: true}
	f := &fakeHistory{cur: 4, published: now.Add(-time.Second), entries: []store.HistoryEntry{entry(2), entry(4)}, late: &late, lateAfter: 2}
	var got collect
	r, err := replayer(f, ReplayLimits{}).Replay(context.Background(), Request{Topic: ab, Since: 1}, got.send)
	require.NoError(t, err)
	assert.Equal(t, collect{`{"n":0002}`, `{"n":0004}`}, got, "3 was marked skipped while we waited")
	assert.Equal(t, Replayed{Last: 4, Frames: 2, Events: 3}, r)
}

func TestReplay_RefusesWhatIsNoLongerKept(t *testing.T) {
	for name, f := range map[string]*fakeHistory{
		"a hole in the middle":            {cur: 4, entries: []store.HistoryEntry{entry(2), entry(4)}},
		"the first one gone":              {cur: 4, entries: entries(3, 4)},
		"the client ahead of the topic":   {cur: 0},
		"more missed than a resume sends": {cur: MaxReplay + 2},
	} {
		t.Run(name, func(t *testing.T) {
			var got collect
			_, err := replayer(f, ReplayLimits{}).Replay(context.Background(), Request{Topic: ab, Since: 1}, got.send)
			assert.ErrorIs(t, err, ErrHistoryExpired)
			assert.Empty(t, got)
		})
	}
}

// Entries missing at the end of a topic whose last event was published
// long ago were never kept (published without history): waiting for them
// is waiting for nothing.
func TestReplay_DoesNotWaitForHistoryThatCannotArrive(t *testing.T) {
	for name, published := range map[string]time.Time{
		"published a minute ago": now.Add(-time.Minute),
		"publish time unknown":   {},
	} {
		t.Run(name, func(t *testing.T) {
			f := &fakeHistory{cur: 4, published: published, entries: entries(2, 3)}
			var got collect
			_, err := replayer(f, ReplayLimits{}).Replay(context.Background(), Request{Topic: ab, Since: 1}, got.send)
			assert.ErrorIs(t, err, ErrHistoryExpired)
			assert.Equal(t, 2, f.reads, "the page, then the tail once: no polling")
		})
	}
}

// However many resumes a frame holds, it waits for events in flight at
// most once, at most tailWait.
func TestReplay_WaitsOncePerReplayer(t *testing.T) {
	f := &fakeHistory{cur: 3, published: now, entries: entries(1, 2)}
	p := replayer(f, ReplayLimits{})
	start := time.Now()
	_, err := p.Replay(context.Background(), Request{Topic: ab, Since: 0}, (&collect{}).send)
	require.ErrorIs(t, err, ErrHistoryExpired)
	waited := f.reads
	assert.Greater(t, waited, 2, "the first resume polls for event 3")
	for range 20 {
		f.reads = 0
		_, err := p.Replay(context.Background(), Request{Topic: ab, Since: 2}, (&collect{}).send)
		require.ErrorIs(t, err, ErrHistoryExpired)
		assert.Equal(t, 1, f.reads, "later resumes do not wait again")
	}
	assert.Less(t, time.Since(start), 2*time.Second, "20 resumes of missing history do not take 20 waits")
}

func TestReplay_StopsAtTheByteCap(t *testing.T) {
	f := &fakeHistory{cur: 10, entries: entries(1, 10), grant: 1 << 20}
	p := replayer(f, ReplayLimits{Bytes: 25, PerMinute: 1 << 20})
	var got collect
	r, err := p.Replay(context.Background(), Request{Topic: ab, Since: 0}, got.send)
	require.NoError(t, err)
	assert.Equal(t, Replayed{Last: 2, Frames: 2, Events: 2, More: true}, r, "two 10-byte frames fit in 25 bytes; the third does not")
	assert.Len(t, got, 2)

	_, err = p.Replay(context.Background(), Request{Topic: ab, Since: 5}, got.send)
	assert.ErrorIs(t, err, ErrReplayLimited, "a later resume of the same frame sends nothing")
	r, err = p.Replay(context.Background(), Request{Topic: ab, Since: 10}, got.send)
	require.NoError(t, err, "one with nothing to replay still answers")
	assert.Equal(t, uint64(10), r.Last)
	assert.Len(t, got, 2)

	require.NoError(t, p.Close(context.Background()))
	assert.Equal(t, 1, f.reserved, "one reservation per replayer")
	assert.Equal(t, []int64{20}, f.returned, "what was sent is kept; the rest given back")
}

// Stored frames (current state, presence pages) count against the same
// caps, and every Replayer draws on the connection's allowance and its
// principal's.
func TestSend_StoredFramesShareTheCapsAndThePrincipalsAllowance(t *testing.T) {
	f := &fakeHistory{grant: 1 << 20}
	conn := store.Connection{ID: "c1", Principal: auth.Principal{Identity: auth.Identity{Type: "user", Sub: "u1"}}}
	p := NewReplayer(f, conn, ReplayLimits{Bytes: 25, PerMinute: 1 << 20, PrincipalPerMinute: 1 << 20, AddressPerMinute: 1}, clock)
	var got collect
	n, err := p.Send(context.Background(), [][]byte{[]byte("0123456789"), []byte("0123456789"), []byte("0123456789")}, got.send)
	assert.ErrorIs(t, err, ErrReplayLimited)
	assert.Equal(t, 2, n, "two 10-byte frames fit in 25 bytes")
	assert.Len(t, got, 2)
	principal, _ := store.SourceReplay(conn)
	assert.Equal(t, []store.ReplayBucket{store.ConnectionReplay("c1"), principal}, f.buckets)
	require.NoError(t, p.Close(context.Background()))
	assert.Equal(t, []int64{20, 20}, f.returned, "both given back what was not sent")
}

func TestReplay_ConnectionAllowanceUsedUp(t *testing.T) {
	f := &fakeHistory{cur: 3, entries: entries(1, 3), grant: -1}
	p := replayer(f, ReplayLimits{Bytes: 1 << 20, PerMinute: 8 << 20})
	var got collect
	_, err := p.Replay(context.Background(), Request{Topic: ab, Since: 0}, got.send)
	assert.ErrorIs(t, err, ErrReplayLimited)
	assert.Empty(t, got)
	require.NoError(t, p.Close(context.Background()))
	assert.Empty(t, f.returned, "nothing was reserved")

	f = &fakeHistory{cur: 3, entries: entries(1, 3), grant: 15}
	r, err := replayer(f, ReplayLimits{Bytes: 1 << 20, PerMinute: 8 << 20}).Replay(context.Background(), Request{Topic: ab, Since: 0}, got.send)
	require.NoError(t, err)
	assert.Equal(t, Replayed{Last: 1, Frames: 1, Events: 1, More: true}, r, "what is left of the minute bounds it")
}

func TestReplay_SendFailureEndsIt(t *testing.T) {
	f := &fakeHistory{cur: 3, entries: entries(1, 3)}
	n := 0
	r, err := replayer(f, ReplayLimits{}).Replay(context.Background(), Request{Topic: ab, Since: 0}, func([]byte) error {
		if n++; n == 2 {
			return errors.New("gone")
		}
		return nil
	})
	assert.ErrorIs(t, err, ErrNotDelivered)
	assert.Equal(t, 1, r.Frames)
	assert.Equal(t, 2, n, "nothing sent after the failure")
}

// A replayed event in the envelope is the frame it was live: its topic,
// number, id and time come from the history entry.
func TestReplay_EnvelopedFrameIsTheLiveOne(t *testing.T) {
	e := entry(2)
	e.Payload = []byte(`{"n":2}`)
	e.Time = time.Date(2026, 3, 1, 12, 30, 45, 123_000_000, time.UTC)
	f := &fakeHistory{cur: 2, entries: []store.HistoryEntry{e}}
	var got collect
	_, err := replayer(f, ReplayLimits{}).Replay(context.Background(), Request{Topic: ab, Since: 1, Envelope: true}, got.send)
	require.NoError(t, err)
	live, err := NewEncoder(Item{Event: e.Event, Seq: 2}).Frame(Form{Envelope: true})
	require.NoError(t, err)
	assert.Equal(t, collect{`{"type":"event","topic":"a.b","seq":2,"id":"e2","time":"2026-03-01T12:30:45.123Z","data":{"n":2}}`}, got)
	assert.Equal(t, string(live), got[0])
}
