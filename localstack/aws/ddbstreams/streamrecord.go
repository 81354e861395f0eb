package ddbstreams

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"
)

// streamRecord is one stream record on its way to the function.
type streamRecord struct {
	raw     json.RawMessage // as the function gets it
	seq     string
	shardID string // DynamoDB Local's shard it was read from
	lane    int
	// arrival is when the record reached the stream (for its age);
	// queued, when the mapping read it (for the batching window).
	arrival, queued time.Time
}

// ttlIdentity is the userIdentity of a deletion by TTL.
var ttlIdentity = json.RawMessage(`{"type":"Service","principalId":"dynamodb.amazonaws.com"}`)

// clockSlack is how far DynamoDB Local's ApproximateCreationDateTime may
// lag: it rounds down to the minute (AWS to the second), so a record put
// at 12:00:59.9 and read at 12:01:00.1 says 12:00:00. Two minutes: a record
// is dated by its creation time only when read over a minute after it.
const clockSlack = 2 * time.Minute

// parse reads what the mapping needs from a record and makes it the
// record Lambda delivers: with eventSourceARN, and a TTL deletion marked
// as DynamoDB marks it.
func (r *streamRunner) parse(raw json.RawMessage, shardID string, now time.Time) (streamRecord, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return streamRecord{}, err
	}
	var name string
	var d struct {
		ApproximateCreationDateTime float64
		SequenceNumber              string
		Keys                        map[string]json.RawMessage
		NewImage, OldImage          json.RawMessage
	}
	if err := json.Unmarshal(m["dynamodb"], &d); err != nil {
		return streamRecord{}, fmt.Errorf("record's dynamodb: %w", err)
	}
	_ = json.Unmarshal(m["eventName"], &name)
	// DynamoDB Local's TTL deletion has an eventName outside the API's
	// three and no userIdentity; DynamoDB's is a REMOVE by its service.
	if name != "INSERT" && name != "MODIFY" && name != "REMOVE" && d.OldImage != nil && d.NewImage == nil {
		m["eventName"], m["userIdentity"] = json.RawMessage(`"REMOVE"`), ttlIdentity
	}
	m["eventSourceARN"], _ = json.Marshal(r.arn)
	out, err := json.Marshal(m)
	if err != nil {
		return streamRecord{}, err
	}
	arrival := arrivalOf(time.UnixMilli(int64(d.ApproximateCreationDateTime*1000)), now)
	shard := hashOf(d.Keys[r.hashKey]) % uint32(r.m.Shards)
	item, _ := json.Marshal(d.Keys) // map keys sorted: one spelling per item
	lane := int(shard)*r.m.ParallelizationFactor + int(hashOf(item)%uint32(r.m.ParallelizationFactor))
	return streamRecord{raw: out, seq: d.SequenceNumber, shardID: shardID, lane: lane, arrival: arrival, queued: now}, nil
}

// arrivalOf is when a record created at created (as the stream dates it)
// and read at now reached the stream: when it was read, unless that was
// long after it was written.
func arrivalOf(created, now time.Time) time.Time {
	if created.Add(clockSlack).Before(now) {
		return created
	}
	return now
}

// hashOf is a key's hash, whatever the spacing of its JSON.
func hashOf(key json.RawMessage) uint32 {
	var b bytes.Buffer
	if json.Compact(&b, key) != nil {
		b.Reset()
		b.Write(key)
	}
	h := fnv.New32a()
	h.Write(b.Bytes())
	return h.Sum32()
}
