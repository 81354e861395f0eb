package store

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The table's stream (NEW_AND_OLD_IMAGES) tells when connections open and
// close, without a write or a wait on $connect's path: a connection's meta
// item is written when it is admitted (or, in auth-message mode, changed
// from pending to authenticated) and deleted when it goes, by $disconnect,
// by a post that found it gone, or by DynamoDB's TTL when $disconnect never
// came.

// StreamRecord is one DynamoDB stream record, as Lambda's event source
// mapping delivers it (and as GetRecords returns it).
type StreamRecord struct {
	EventID   string `json:"eventID"`
	EventName string `json:"eventName"` // INSERT, MODIFY or REMOVE
	Dynamodb  struct {
		// ApproximateCreationDateTime is in seconds since the epoch.
		ApproximateCreationDateTime float64                    `json:"ApproximateCreationDateTime"`
		Keys                        map[string]json.RawMessage `json:"Keys"`
		NewImage                    map[string]json.RawMessage `json:"NewImage"`
		OldImage                    map[string]json.RawMessage `json:"OldImage"`
	} `json:"dynamodb"`
	// UserIdentity is set on deletions by TTL: type Service, principalId
	// dynamodb.amazonaws.com.
	UserIdentity *struct {
		Type        string `json:"type"`
		PrincipalID string `json:"principalId"`
	} `json:"userIdentity"`
}

// ByTTL reports whether the record is a deletion by DynamoDB's TTL: its
// userIdentity is the DynamoDB service.
func (r StreamRecord) ByTTL() bool {
	return r.UserIdentity != nil && r.UserIdentity.Type == "Service" && r.UserIdentity.PrincipalID == "dynamodb.amazonaws.com"
}

// StreamUse is what the broadcast function takes from the table's stream:
// connection lifecycle events, presence's join and leave, or both.
type StreamUse struct {
	Lifecycle bool
	// PresencePrefixes are the presence topics' literal prefixes.
	PresencePrefixes []string
}

// Filters are the filters of the event source mapping that feeds the
// table's stream to the broadcast function: Lambda's event filtering, in
// EventBridge's pattern syntax (the CDK stack deploys these strings and
// the local stack evaluates the same ones); a record passes when one of
// them matches, and none means no mapping. They pass only what the
// function acts on, since every record passed is an invocation paid for:
//
//   - a connection opened at the handshake: the INSERT of a connection's
//     meta item that is not pending;
//   - a connection closed: the REMOVE of a meta item that was not pending
//     ($disconnect, a post that found it gone, or its TTL);
//   - a pending connection opened by an auth message: the MODIFY whose old
//     image is pending and whose new one is not;
//   - for presence, the INSERT and REMOVE of the subscription index
//     entries of topics under the prefixes, all of them alternatives of
//     one filter (Lambda takes 5 filters a mapping).
//
// Every other write passes none: the meta item's updates by each client
// frame (command counting, subscription counts, replay allowance, token
// refresh), a pending connection coming and going, and the MODIFY of an
// index entry, which a subscription re-put with new filters or presence
// flag writes: its topic, connection and identity are those of the INSERT
// that put the connection in the roster, and the roster's ADD is
// idempotent, so folding it would change nothing.
func (u StreamUse) Filters() []string {
	var filters []string
	if u.Lifecycle {
		connection := map[string]any{
			PartitionKey: map[string]any{"S": []any{map[string]any{"prefix": prefixConn}}},
			SortKey:      map[string]any{"S": []any{skMeta}},
		}
		pending := func(is bool) map[string]any {
			return map[string]any{attrPending: map[string]any{"N": []any{map[string]any{"exists": is}}}}
		}
		filters = append(filters,
			streamFilter([]string{"INSERT"}, map[string]any{"Keys": connection, "NewImage": pending(false)}),
			streamFilter([]string{"REMOVE"}, map[string]any{"Keys": connection, "OldImage": pending(false)}),
			streamFilter([]string{"MODIFY"}, map[string]any{"Keys": connection, "OldImage": pending(true), "NewImage": pending(false)}))
	}
	var topics []any
	seen := map[string]bool{}
	for _, p := range u.PresencePrefixes {
		if !seen[p] {
			seen[p] = true
			topics = append(topics, map[string]any{"prefix": prefixPattern + p})
		}
	}
	if len(topics) > 0 {
		filters = append(filters, streamFilter([]string{"INSERT", "REMOVE"},
			map[string]any{"Keys": map[string]any{PartitionKey: map[string]any{"S": topics}}}))
	}
	return filters
}

func streamFilter(events []string, dynamodb map[string]any) string {
	b, _ := json.Marshal(map[string]any{"eventName": events, "dynamodb": dynamodb}) // strings only: cannot fail
	return string(b)
}

// Lifecycle is a connection opened or closed.
type Lifecycle struct {
	// ID is the stream record's id: stable across retries of a batch.
	ID     string
	Opened bool
	Conn   Connection
	// At is when the change was recorded (the stream's time, to the second).
	At time.Time
	// ByAuthMessage: opened by an auth message after a token-less handshake.
	ByAuthMessage bool
	// Expired: closed by the record's TTL (its $disconnect never came).
	Expired bool
}

// LifecycleOf reads what a stream record says of a connection: false for
// records of other items and for changes that neither open nor close one
// (a pending connection, a counter update, a pending one going away).
func LifecycleOf(r StreamRecord) (Lifecycle, bool, error) {
	sk, err := imageString(r.Dynamodb.Keys, SortKey)
	pk, _ := imageString(r.Dynamodb.Keys, PartitionKey)
	if err != nil || sk != skMeta || !strings.HasPrefix(pk, prefixConn) {
		return Lifecycle{}, false, err
	}
	l := Lifecycle{ID: r.EventID, At: time.UnixMilli(int64(r.Dynamodb.ApproximateCreationDateTime * 1000))}
	image := r.Dynamodb.NewImage
	switch r.EventName {
	case "INSERT":
		l.Opened = true
	case "MODIFY":
		_, wasPending := r.Dynamodb.OldImage[attrPending]
		_, isPending := r.Dynamodb.NewImage[attrPending]
		if !wasPending || isPending {
			return Lifecycle{}, false, nil
		}
		l.Opened, l.ByAuthMessage = true, true
	case "REMOVE":
		image = r.Dynamodb.OldImage
		l.Expired = r.ByTTL()
	default:
		return Lifecycle{}, false, nil
	}
	if image == nil {
		return Lifecycle{}, false, fmt.Errorf("store: stream record %s has no image: the stream must be NEW_AND_OLD_IMAGES", r.EventID)
	}
	item, err := itemFromJSON(image)
	if err != nil {
		return Lifecycle{}, false, fmt.Errorf("store: stream record %s: %w", r.EventID, err)
	}
	if _, pending := item[attrPending]; pending {
		return Lifecycle{}, false, nil // never opened
	}
	if l.Conn, err = connectionFrom(item); err != nil {
		return Lifecycle{}, false, err
	}
	return l, true, nil
}

func imageString(image map[string]json.RawMessage, name string) (string, error) {
	raw, ok := image[name]
	if !ok {
		return "", nil
	}
	v, err := attributeFromJSON(raw)
	if err != nil {
		return "", err
	}
	s, _ := v.(*types.AttributeValueMemberS)
	if s == nil {
		return "", nil
	}
	return s.Value, nil
}

func itemFromJSON(image map[string]json.RawMessage) (map[string]types.AttributeValue, error) {
	item := make(map[string]types.AttributeValue, len(image))
	for k, raw := range image {
		v, err := attributeFromJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", k, err)
		}
		item[k] = v
	}
	return item, nil
}

// attributeFromJSON reads one attribute value in DynamoDB's JSON form
// ({"S":"x"}, {"N":"1"}, {"M":{...}}, ...).
func attributeFromJSON(raw json.RawMessage) (types.AttributeValue, error) {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil || len(v) != 1 {
		return nil, fmt.Errorf("not an attribute value: %.60s", raw)
	}
	for typ, body := range v {
		var err error
		switch typ {
		case "S":
			var s string
			err = json.Unmarshal(body, &s)
			return &types.AttributeValueMemberS{Value: s}, err
		case "N":
			var s string
			err = json.Unmarshal(body, &s)
			return &types.AttributeValueMemberN{Value: s}, err
		case "B":
			var b []byte // base64 in JSON
			err = json.Unmarshal(body, &b)
			return &types.AttributeValueMemberB{Value: b}, err
		case "BOOL":
			var b bool
			err = json.Unmarshal(body, &b)
			return &types.AttributeValueMemberBOOL{Value: b}, err
		case "NULL":
			return &types.AttributeValueMemberNULL{Value: true}, nil
		case "SS", "NS":
			var ss []string
			if err = json.Unmarshal(body, &ss); typ == "SS" {
				return &types.AttributeValueMemberSS{Value: ss}, err
			}
			return &types.AttributeValueMemberNS{Value: ss}, err
		case "BS":
			var bs []string
			err = json.Unmarshal(body, &bs)
			out := make([][]byte, len(bs))
			for i, s := range bs {
				if out[i], err = base64.StdEncoding.DecodeString(s); err != nil {
					break
				}
			}
			return &types.AttributeValueMemberBS{Value: out}, err
		case "M":
			var m map[string]json.RawMessage
			if err = json.Unmarshal(body, &m); err != nil {
				return nil, err
			}
			item, err := itemFromJSON(m)
			return &types.AttributeValueMemberM{Value: item}, err
		case "L":
			var l []json.RawMessage
			if err = json.Unmarshal(body, &l); err != nil {
				return nil, err
			}
			out := make([]types.AttributeValue, len(l))
			for i, e := range l {
				if out[i], err = attributeFromJSON(e); err != nil {
					return nil, err
				}
			}
			return &types.AttributeValueMemberL{Value: out}, nil
		}
		return nil, fmt.Errorf("unknown attribute type %q", typ)
	}
	return nil, nil
}

// IsStream reports whether an invocation's records come from a DynamoDB
// stream (rather than SQS).
func IsStream(firstRecord json.RawMessage) bool {
	var r struct {
		EventSource string `json:"eventSource"`
	}
	return json.Unmarshal(firstRecord, &r) == nil && r.EventSource == "aws:dynamodb"
}
