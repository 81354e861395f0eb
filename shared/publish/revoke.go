package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
)

// RevokeDetailType marks a revocation: an event of this detail-type on the
// stack's bus closes the connections of a principal, or of one of its
// tokens, and refuses them until a time. RevokeRulePattern is the stack's
// second rule, which sends these to the broadcast function.
const (
	RevokeDetailType  = "wsgate.revoke"
	RevokeRulePattern = `{"detail-type":["` + RevokeDetailType + `"]}`
	// MaxRevocation bounds how far ahead a revocation may reach.
	MaxRevocation = 366 * 24 * time.Hour
	maxIDBytes    = 256
)

// Revocation is the detail of a wsgate.revoke event.
//
//	{"principal": "user:42"}                             every connection of user 42
//	{"principal": "42", "token_id": "t-9", "until": "…"}  those holding token t-9
//
// principal is "<ptype>:<sub>", or a bare sub of the default type (as in
// an audience). token_id is the token's jti. until (RFC 3339) is when the
// principal, or the token, may connect again; omitted, it is the longest
// a token may live (WSGATE_MAX_TOKEN_LIFETIME) from now, so no token issued
// before the revocation outlives it. An until already past closes the
// connections and refuses nothing.
//
//	{"principal": "user:42", "lift": true}               ends user 42's ban now
//
// lift ends the ban (of the principal, or of token_id) before its until;
// a lift takes no until. A revocation published before a lift never bans
// again, even if EventBridge delivers it after the lift.
type Revocation struct {
	Principal string    `json:"principal"`
	TokenID   string    `json:"token_id,omitempty"`
	Until     time.Time `json:"until,omitzero"`
	Lift      bool      `json:"lift,omitempty"`
}

// Who is the revoked principal's type and id, split like an audience
// entry: at the first colon; a bare principal is of defaultType.
func (r Revocation) Who(defaultType string) (ptype, sub string) {
	if t, s, ok := strings.Cut(r.Principal, ":"); ok {
		return t, s
	}
	return defaultType, r.Principal
}

// ParseRevocation reads and checks a wsgate.revoke detail; now and
// defaultFor fill in an omitted until.
func ParseRevocation(detail []byte, now time.Time, defaultFor time.Duration) (Revocation, error) {
	var r Revocation
	if err := decodeStrict(detail, "revocation", &r); err != nil {
		return Revocation{}, err
	}
	if err := eachKey(detail, "revocation", func(key string, _ json.RawMessage) error {
		return exactKey("revocation", key, []string{"principal", "token_id", "until", "lift"})
	}); err != nil {
		return Revocation{}, err
	}
	ptype, sub := r.Who("default")
	switch {
	case ptype == "" || sub == "":
		return Revocation{}, fmt.Errorf("%w: revocation.principal must be \"<ptype>:<sub>\" or a sub", ErrInvalid)
	case len(r.Principal) > 2*maxIDBytes || len(r.TokenID) > maxIDBytes:
		return Revocation{}, fmt.Errorf("%w: revocation.principal or token_id is too long", ErrInvalid)
	case r.Lift && !r.Until.IsZero():
		return Revocation{}, fmt.Errorf("%w: revocation.lift ends a ban now; it takes no until", ErrInvalid)
	case r.Lift:
	case r.Until.IsZero():
		r.Until = now.Add(defaultFor)
	case r.Until.After(now.Add(MaxRevocation)):
		return Revocation{}, fmt.Errorf("%w: revocation.until is more than %s ahead", ErrInvalid, MaxRevocation)
	}
	return r, nil
}

// Revoke publishes a revocation to the stack's bus.
func (p Publisher) Revoke(ctx context.Context, r Revocation) error {
	return p.Announce(ctx, RevokeDetailType, r)
}

// Announce puts one event of detailType, with v as its detail, on the
// stack's bus: a revocation, or a copy of a client's event for backends.
func (p Publisher) Announce(ctx context.Context, detailType string, v any) error {
	return p.AnnounceAll(ctx, []Announcement{{DetailType: detailType, Detail: v}})
}

// Announcement is one event AnnounceAll puts on the bus.
type Announcement struct {
	DetailType string
	Detail     any
}

// AnnounceAll puts the events on the stack's bus in calls of at most 10
// entries, retrying entries EventBridge throttled; an error lists those it
// did not accept.
func (p Publisher) AnnounceAll(ctx context.Context, all []Announcement) error {
	src := p.Source
	if src == "" {
		src = DefaultSource
	}
	entries := make([]types.PutEventsRequestEntry, len(all))
	for i, a := range all {
		b, err := json.Marshal(a.Detail)
		if err != nil {
			return fmt.Errorf("publish: %s: %w", a.DetailType, err)
		}
		entries[i] = types.PutEventsRequestEntry{
			EventBusName: aws.String(p.Bus), Source: aws.String(src),
			DetailType: aws.String(a.DetailType), Detail: aws.String(string(b)),
		}
	}
	ids := make([]string, len(entries))
	var failed []EntryError
	for start := 0; start < len(entries); start += MaxEntriesPerCall {
		f, err := p.send(ctx, entries[start:min(start+MaxEntriesPerCall, len(entries))], start, ids)
		if err != nil {
			return err
		}
		failed = append(failed, f...)
	}
	if len(failed) > 0 {
		return &PublishError{Failed: failed}
	}
	return nil
}
