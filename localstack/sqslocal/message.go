package sqslocal

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
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

// message is one stored message. Everything but the delivery bookkeeping
// is immutable after send, so deliveries may share the maps.
type message struct {
	id               string
	body             string
	md5OfBody        string
	attributes       map[string]attributeValue
	systemAttributes map[string]attributeValue
	groupID          string
	senderID         string
	sentAt           time.Time
	deadLetterSource string // ARN of the queue the message was redriven from
	firstReceivedAt  time.Time
	receiveCount     int
	receiptHandle    string // the latest; only it may change visibility
	state            messageState
	visibleAt        time.Time // for delayed and in-flight messages
	heapIndex        int       // position in queue.pending, -1 when not there
	readyGeneration  uint64    // matches the live entry in queue.ready
}

// delivery is what one receive hands out: a snapshot of the message taken
// under the service lock.
type delivery struct {
	msg             *message
	receiptHandle   string
	receiveCount    int
	firstReceivedAt time.Time
}

// newID returns a random UUID (version 4), the form SQS message ids take.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newReceiptHandle encodes the queue, the message and a nonce, so that a
// handle names its message without a lookup table and every receive yields
// a different handle.
func newReceiptHandle(queueName, messageID string) string {
	var nonce [18]byte
	_, _ = rand.Read(nonce[:])
	raw := queueName + "\x00" + messageID + "\x00" + base64.RawURLEncoding.EncodeToString(nonce[:])
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// parseReceiptHandle returns the queue name and message id a handle names.
func parseReceiptHandle(handle string) (queueName, messageID string, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// md5OfAttributes implements SQS's digest of message attributes: for each
// attribute in name order, the name, the data type, a transport byte (1 for
// string values, 2 for binary ones) and the value, each string or byte value
// prefixed by its 4-byte big-endian length. An empty set has no digest.
func md5OfAttributes(attrs map[string]attributeValue) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	h := md5.New()
	writeField := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, name := range names {
		v := attrs[name]
		writeField([]byte(name))
		writeField([]byte(deref(v.DataType)))
		if v.StringValue != nil {
			h.Write([]byte{1})
			writeField([]byte(*v.StringValue))
		} else {
			h.Write([]byte{2})
			writeField(v.BinaryValue)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

const maxMessageAttributes = 10

// validateAttributes checks message attributes the way SQS does and returns
// the number of bytes they add to the message size.
func validateAttributes(attrs map[string]attributeValue) (int, *apiError) {
	if len(attrs) > maxMessageAttributes {
		return 0, newError(codeInvalidParameterValue,
			"Number of message attributes [%d] exceeds the allowed maximum [%d].", len(attrs), maxMessageAttributes)
	}
	size := 0
	for name, v := range attrs {
		if err := validateAttributeName(name); err != nil {
			return 0, err
		}
		dataType := deref(v.DataType)
		if dataType == "" {
			return 0, newError(codeInvalidParameterValue, "The message attribute '%s' must contain non-empty message attribute type.", name)
		}
		base, _, _ := strings.Cut(dataType, ".")
		if len(dataType) > 256 || (base != "String" && base != "Number" && base != "Binary") {
			return 0, newError(codeInvalidParameterValue, "The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", name)
		}
		switch base {
		case "Binary":
			if len(v.BinaryValue) == 0 || v.StringValue != nil {
				return 0, newError(codeInvalidParameterValue, "The message attribute '%s' with type 'Binary' must use field 'Binary'.", name)
			}
			size += len(v.BinaryValue)
		default:
			if v.StringValue == nil || *v.StringValue == "" || v.BinaryValue != nil {
				return 0, newError(codeInvalidParameterValue, "The message attribute '%s' with type '%s' must use field 'String'.", name, base)
			}
			if base == "Number" {
				if _, err := strconv.ParseFloat(*v.StringValue, 64); err != nil {
					return 0, newError(codeInvalidParameterValue, "Can't cast the value of message (user) attribute '%s' to a number.", name)
				}
			} else if !validMessageText(*v.StringValue) {
				return 0, newError(codeInvalidParameterValue, "Message (user) attribute '%s' value contains invalid characters.", name)
			}
			size += len(*v.StringValue)
		}
		size += len(name) + len(dataType)
	}
	return size, nil
}

func validateAttributeName(name string) *apiError {
	invalid := func(reason string) *apiError {
		return newError(codeInvalidParameterValue, "Message (user) attribute name '%s' is invalid. %s", name, reason)
	}
	if name == "" || len(name) > 256 {
		return invalid("The name must be 1 to 256 characters long.")
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon.") {
		return invalid("The attribute name must not start with the AWS-reserved prefixes aws. or amazon.")
	}
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return invalid("The attribute name must not start or end with a period, nor contain successive periods.")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return invalid("The attribute name can contain only alphanumeric characters, hyphens, underscores and periods.")
		}
	}
	return nil
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

// selectAttributes returns the message attributes a receive asked for with
// MessageAttributeNames: "All" or ".*" for every one, "prefix.*" for those
// under a prefix, or exact names.
func selectAttributes(attrs map[string]attributeValue, names []string) map[string]attributeValue {
	if len(attrs) == 0 || len(names) == 0 {
		return nil
	}
	out := make(map[string]attributeValue)
	for _, want := range names {
		switch {
		case want == "All" || want == ".*":
			return attrs
		case strings.HasSuffix(want, ".*"):
			prefix := strings.TrimSuffix(want, "*")
			for name, v := range attrs {
				if strings.HasPrefix(name, prefix) {
					out[name] = v
				}
			}
		default:
			if v, ok := attrs[want]; ok {
				out[want] = v
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// systemAttributes returns the message system attributes of a delivery, as
// strings keyed by their SQS names, restricted to wanted unless it holds
// "All" (nil wanted means none).
func (d delivery) systemAttributes(wanted map[string]bool) map[string]string {
	if len(wanted) == 0 {
		return nil
	}
	all := map[string]string{
		"ApproximateReceiveCount":          strconv.Itoa(d.receiveCount),
		"SentTimestamp":                    epochMillis(d.msg.sentAt),
		"ApproximateFirstReceiveTimestamp": epochMillis(d.firstReceivedAt),
		"SenderId":                         d.msg.senderID,
	}
	if v, ok := d.msg.systemAttributes["AWSTraceHeader"]; ok && v.StringValue != nil {
		all["AWSTraceHeader"] = *v.StringValue
	}
	if d.msg.groupID != "" {
		all["MessageGroupId"] = d.msg.groupID
	}
	if d.msg.deadLetterSource != "" {
		all["DeadLetterQueueSourceArn"] = d.msg.deadLetterSource
	}
	if wanted["All"] {
		return all
	}
	out := make(map[string]string)
	for name := range wanted {
		if v, ok := all[name]; ok {
			out[name] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func epochMillis(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
