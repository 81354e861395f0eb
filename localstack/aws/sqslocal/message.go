package sqslocal

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"
)

// messageState is where a message is in its life: ready to be received,
// received and invisible until its visibility timeout, or not yet
// available because of a delay.
type messageState int

const (
	stateVisible messageState = iota
	stateInFlight
	stateDelayed
	stateGone
)

// message is one stored message. id, body, md5OfBody, senderID and sentAt
// are immutable after send; the rest is delivery bookkeeping.
type message struct {
	id              string
	body            string
	md5OfBody       string
	senderID        string
	sentAt          time.Time
	firstReceivedAt time.Time
	receiveCount    int
	receiptHandle   string    // the latest; only it deletes the message
	receivedAt      time.Time // when the latest receive handed it out
	state           messageState
	visibleAt       time.Time // for delayed and in-flight messages
	heapIndex       int       // position in queue.pending, -1 when not there
	readyGeneration uint64    // matches the live entry in queue.ready
}

// newID returns a random UUID (version 4), the form SQS message ids take;
// receipt handles use it too, so every receive yields a new handle.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// validMessageText reports whether s holds only the characters SQS allows:
// #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
func validMessageText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}
