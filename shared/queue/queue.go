// Package queue carries deferred work to the broadcast function through SQS:
// auth deadlines of pending connections, history replays requested at
// connect, and fan-out shards of large audiences.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/store"
)

// Kinds of task.
const (
	// KindAuthDeadline closes a connection still pending at its deadline.
	KindAuthDeadline = "auth_deadline"
	// KindReplay sends a topic's history after a sequence number to a
	// connection that asked for it with ?since= at connect.
	KindReplay = "replay"
	// KindShard delivers one page of an event's subscribers.
	KindShard = "shard"
	// KindTokenExpiry closes a connection whose token has expired, or
	// waits again when a refresh moved the expiry later.
	KindTokenExpiry = "token_expiry"
	// KindPresence delivers a join or a leave to a topic's watchers (or,
	// on a retry, to those of them whose posts failed).
	KindPresence = "presence"
)

// MaxDelay is SQS's longest message delay.
const MaxDelay = 15 * time.Minute

// MaxReceives is the task queue's redrive maxReceiveCount (the CDK stack
// and the local stack set it from here): a task received this often
// without succeeding goes to the dead-letter queue. With RetryDelay's
// schedule that is after 3 to 6 minutes of retries.
const MaxReceives = 10

// retry spaces the receives of a failing task: from a second, doubling,
// never under half the step (equal jitter), so a task that failed once is
// back within one or two seconds and one that keeps failing backs off.
var retry = backoff.Policy{Base: time.Second, Max: 2 * time.Minute, Jitter: backoff.Equal}

// RetryDelay is how long a task that failed on its receiveCount-th
// receive (SQS's ApproximateReceiveCount, from 1) stays invisible before
// it is received again, in whole seconds as SQS takes it: at least 1 s.
func RetryDelay(receiveCount int) time.Duration {
	d := retry.Delay(receiveCount - 1)
	return max(((d+time.Second-1)/time.Second)*time.Second, time.Second)
}

// SQS's limits: a message, and a batch's messages together, at most
// MaxMessageBytes; at most maxBatchEntries entries per batch.
const (
	MaxMessageBytes = 1 << 20
	maxBatchEntries = 10
)

// ErrTooLarge: a task does not fit in one SQS message.
var ErrTooLarge = errors.New("queue: task larger than an SQS message")

// Task is one unit of deferred work.
type Task struct {
	Kind         string `json:"kind"`
	ConnectionID string `json:"connection_id,omitempty"`
	Topic        string `json:"topic,omitempty"`
	Since        uint64 `json:"since,omitempty"`
	// Shard fields: one hash range of an event's audience (the shard reads
	// its subscribers itself, and decides audience and filters).
	EventID   string          `json:"event_id,omitempty"`
	EventTime time.Time       `json:"event_time,omitzero"`
	Seq       uint64          `json:"seq,omitempty"`
	Shard     int             `json:"shard,omitempty"`
	Detail    json.RawMessage `json:"detail,omitempty"`
	// DetailRef names the event whose detail is stored in the table
	// instead (store.PutDetail): a large detail is stored once, not once
	// per shard. A shard has Detail or DetailRef.
	DetailRef string `json:"detail_ref,omitempty"`
	// Range is the shard's range of the hash space and the patterns it
	// reads there; never connection ids.
	Range *Range `json:"range,omitempty"`
	// Conns are the watchers a presence task posts to again (their posts
	// failed).
	Conns []string `json:"conns,omitempty"`
	// Announce is a presence task's join or leave.
	Announce *Announce `json:"announce,omitempty"`
	// Attempt counts a task's rounds of retrying failed posts.
	Attempt int `json:"attempt,omitempty"`
}

// Announce is a join or a leave to deliver: the principal, whether it is
// present now, and the announcement's number.
type Announce struct {
	Identity auth.Identity `json:"who"`
	Present  bool          `json:"present,omitempty"`
	Seq      int64         `json:"seq"`
	// From is where the page of watchers the task posts to starts (empty:
	// the first); each task posts one page and hands the next on.
	From string `json:"from,omitempty"`
}

// Range is range R of the 2^K equal ranges of the hash space of
// connections, and the patterns matching the event with their levels.
type Range struct {
	K        int            `json:"k"`
	R        int            `json:"r"`
	Patterns []RangePattern `json:"patterns"`
}

// RangePattern is a pattern whose subscribers a range reads: every level
// that may hold them, and whether it is a wildcard pattern.
type RangePattern struct {
	Pattern  string `json:"p"`
	Levels   []int  `json:"lv,omitempty"`
	Wildcard bool   `json:"w,omitempty"`
}

// batchRetry spaces the resends of a batch's failed entries.
var batchRetry = backoff.Policy{Base: 50 * time.Millisecond, Max: time.Second}

// Tasks schedules deferred work: a Queue, or a test's recorder. The
// gateway, the broadcast function and their wiring take it.
type Tasks interface {
	Send(ctx context.Context, t Task, delay time.Duration) error
	SendAll(ctx context.Context, ts []Task) error
}

// Decode parses a task from an SQS message body.
func Decode(body string) (Task, error) {
	var t Task
	if err := json.Unmarshal([]byte(body), &t); err != nil {
		return Task{}, fmt.Errorf("queue: bad task: %w", err)
	}
	switch t.Kind {
	case KindAuthDeadline, KindReplay, KindTokenExpiry:
		if t.ConnectionID == "" {
			return Task{}, errors.New("queue: task without connection_id")
		}
	case KindPresence:
		if t.Topic == "" || t.Announce == nil {
			return Task{}, errors.New("queue: presence task without topic or announce")
		}
	case KindShard:
		if t.EventID == "" || (len(t.Detail) == 0) == (t.DetailRef == "") || t.Range == nil || len(t.Range.Patterns) == 0 {
			return Task{}, errors.New("queue: shard task without event_id, range or patterns, or without exactly one of detail and detail_ref")
		}
		if t.Range.K < 0 || t.Range.K > store.MaxCut || t.Range.R < 0 || t.Range.R >= 1<<t.Range.K {
			return Task{}, errors.New("queue: shard task's range is outside the hash space")
		}
	default:
		return Task{}, fmt.Errorf("queue: unknown task kind %q", t.Kind)
	}
	return t, nil
}

// SQSAPI is the part of the SQS client the queue uses.
type SQSAPI interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Queue sends tasks to one SQS queue.
type Queue struct {
	client SQSAPI
	url    string
}

// New returns a Queue on the queue at url.
func New(client SQSAPI, url string) *Queue { return &Queue{client: client, url: url} }

// Send enqueues one task, delivered after delay (at most 15 minutes).
func (q *Queue) Send(ctx context.Context, t Task, delay time.Duration) error {
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	_, err = q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     aws.String(q.url),
		MessageBody:  aws.String(string(body)),
		DelaySeconds: int32(min(delay, MaxDelay).Round(time.Second) / time.Second),
	})
	if err != nil {
		return fmt.Errorf("queue: send %s: %w", t.Kind, err)
	}
	return nil
}

// Retry brings back, after delay (RetryDelay), the message a failed task
// came in, instead of the queue's visibility timeout (six times the
// function's): ChangeMessageVisibility on the receipt handle the event
// source mapping received it with. The mapping leaves a message reported
// in batchItemFailures in flight, so its visibility is what this sets.
func (q *Queue) Retry(ctx context.Context, receiptHandle string, delay time.Duration) error {
	_, err := q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(q.url),
		ReceiptHandle:     aws.String(receiptHandle),
		VisibilityTimeout: int32(max(delay, time.Second).Round(time.Second) / time.Second),
	})
	if err != nil {
		return fmt.Errorf("queue: retry a task after %s: %w", delay, err)
	}
	return nil
}

// SendAll enqueues tasks in batches of at most ten entries and
// MaxMessageBytes, retrying entries SQS refused.
func (q *Queue) SendAll(ctx context.Context, tasks []Task) error {
	batches, err := batch(tasks)
	if err != nil {
		return err
	}
	for _, entries := range batches {
		if err := q.sendBatch(ctx, entries); err != nil {
			return err
		}
	}
	return nil
}

// batch encodes tasks and groups them into batches SQS accepts.
func batch(tasks []Task) ([][]types.SendMessageBatchRequestEntry, error) {
	var out [][]types.SendMessageBatchRequestEntry
	var cur []types.SendMessageBatchRequestEntry
	size := 0
	for _, t := range tasks {
		body, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		if len(body) > MaxMessageBytes {
			return nil, fmt.Errorf("%w: %s task of %d bytes", ErrTooLarge, t.Kind, len(body))
		}
		if len(cur) == maxBatchEntries || size+len(body) > MaxMessageBytes {
			out, cur, size = append(out, cur), nil, 0
		}
		cur = append(cur, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(len(cur))), MessageBody: aws.String(string(body))})
		size += len(body)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out, nil
}

func (q *Queue) sendBatch(ctx context.Context, entries []types.SendMessageBatchRequestEntry) error {
	for attempt := 0; len(entries) > 0; attempt++ {
		out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.url), Entries: entries})
		if err != nil {
			return fmt.Errorf("queue: send batch: %w", err)
		}
		if len(out.Failed) == 0 {
			return nil
		}
		if attempt >= 4 {
			return fmt.Errorf("queue: %d tasks refused: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		failed := map[string]bool{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = true
		}
		var retry []types.SendMessageBatchRequestEntry
		for _, e := range entries {
			if failed[aws.ToString(e.Id)] {
				retry = append(retry, e)
			}
		}
		entries = retry
		if err := batchRetry.Wait(ctx, attempt); err != nil {
			return err
		}
	}
	return nil
}
