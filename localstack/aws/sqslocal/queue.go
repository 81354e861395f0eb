package sqslocal

import (
	"container/heap"
	"time"
)

// queue is one standard queue. Every method expects the service lock held.
type queue struct {
	name string
	arn  string
	cfg  queueConfig

	messages map[string]*message // by id, in every state
	// ready holds visible messages in the order they became visible. An
	// entry is live only while its generation matches the message's, so a
	// message leaving the visible state needs no search to be removed.
	ready     []readyEntry
	readyHead int
	readyGen  uint64
	// pending holds delayed and in-flight messages, earliest visibleAt first.
	pending pendingHeap

	visible, inFlight, delayed int
	stats                      QueueStats

	// changed is closed, and replaced, whenever a message may have become
	// available, to wake the event source pollers.
	changed chan struct{}
}

type readyEntry struct {
	msg        *message
	generation uint64
}

func newQueue(name, arn string, cfg queueConfig) *queue {
	return &queue{name: name, arn: arn, cfg: cfg, messages: map[string]*message{}, changed: make(chan struct{})}
}

// notify wakes everything waiting on the queue.
func (q *queue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *queue) counter(state messageState) *int {
	switch state {
	case stateVisible:
		return &q.visible
	case stateInFlight:
		return &q.inFlight
	case stateDelayed:
		return &q.delayed
	}
	return nil
}

// setState moves m to state, keeping counters, ready and pending in step.
// visibleAt is used for the delayed and in-flight states.
func (q *queue) setState(m *message, state messageState, visibleAt time.Time) {
	if c := q.counter(m.state); c != nil {
		*c--
	}
	if c := q.counter(state); c != nil {
		*c++
	}
	m.state = state
	switch state {
	case stateVisible:
		if m.heapIndex >= 0 {
			heap.Remove(&q.pending, m.heapIndex)
		}
		q.readyGen++
		m.readyGeneration = q.readyGen
		q.ready = append(q.ready, readyEntry{msg: m, generation: m.readyGeneration})
	case stateDelayed, stateInFlight:
		m.visibleAt = visibleAt
		if m.heapIndex >= 0 {
			heap.Fix(&q.pending, m.heapIndex)
		} else {
			heap.Push(&q.pending, m)
		}
	case stateGone:
		if m.heapIndex >= 0 {
			heap.Remove(&q.pending, m.heapIndex)
		}
	}
}

// add stores a new message, visible at once or after delay.
func (q *queue) add(m *message, now time.Time, delay time.Duration) {
	m.heapIndex = -1
	m.state = stateGone
	q.messages[m.id] = m
	if delay > 0 {
		q.setState(m, stateDelayed, now.Add(delay))
		return
	}
	q.setState(m, stateVisible, time.Time{})
}

// remove deletes a message for good.
func (q *queue) remove(m *message) {
	q.setState(m, stateGone, time.Time{})
	delete(q.messages, m.id)
}

// advance makes visible every delayed or in-flight message whose time has
// come.
func (q *queue) advance(now time.Time) {
	for len(q.pending) > 0 && !q.pending[0].visibleAt.After(now) {
		q.setState(q.pending[0], stateVisible, time.Time{})
	}
}

// nextWake is when the earliest delayed or in-flight message becomes
// visible; zero if there is none.
func (q *queue) nextWake() time.Time {
	if len(q.pending) == 0 {
		return time.Time{}
	}
	return q.pending[0].visibleAt
}

// popReady returns the next visible message, leaving it in the queue for
// the caller to move on, or nil.
func (q *queue) popReady() *message {
	for q.readyHead < len(q.ready) {
		e := q.ready[q.readyHead]
		q.ready[q.readyHead] = readyEntry{}
		q.readyHead++
		if e.msg.state == stateVisible && e.msg.readyGeneration == e.generation {
			q.compactReady()
			return e.msg
		}
	}
	q.ready = q.ready[:0]
	q.readyHead = 0
	return nil
}

func (q *queue) compactReady() {
	if q.readyHead < 1024 || q.readyHead < len(q.ready)/2 {
		return
	}
	n := copy(q.ready, q.ready[q.readyHead:])
	clear(q.ready[n:])
	q.ready = q.ready[:n]
	q.readyHead = 0
}

// pendingHeap orders delayed and in-flight messages by visibleAt.
type pendingHeap []*message

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].visibleAt.Before(h[j].visibleAt) }
func (h pendingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}

func (h *pendingHeap) Push(x any) {
	m := x.(*message)
	m.heapIndex = len(*h)
	*h = append(*h, m)
}

func (h *pendingHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	m.heapIndex = -1
	*h = old[:len(old)-1]
	return m
}
