package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrUnreadable marks a stored JSON attribute (a filter, an identity or
// principal, attributes, a projection, an audience) that does not decode.
// Reads fail closed on it: a filter or audience that cannot be read never
// widens what a connection receives.
var ErrUnreadable = errors.New("unreadable stored item")

// UnreadableError names the item and attribute that did not decode.
type UnreadableError struct {
	PK, SK, Attr string
	Err          error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("store: attribute %q of item %s / %s does not decode: %v", e.Attr, e.PK, e.SK, e.Err)
}

// Unwrap lets errors.Is find ErrUnreadable and the decode error.
func (e *UnreadableError) Unwrap() []error { return []error{ErrUnreadable, e.Err} }

// decodeAttr decodes the JSON string attribute attr of item into v; a
// missing attribute does not decode either (callers of optional ones check
// that it is there first).
func decodeAttr(item map[string]types.AttributeValue, attr string, v any) error {
	if err := json.Unmarshal([]byte(getS(item, attr)), v); err != nil {
		return &UnreadableError{PK: getS(item, PartitionKey), SK: getS(item, SortKey), Attr: attr, Err: err}
	}
	return nil
}

// Unreadable lists the unreadable items err names, however it was wrapped
// or joined (none when it names none).
func Unreadable(err error) []*UnreadableError {
	switch e := err.(type) {
	case nil:
		return nil
	case *UnreadableError:
		return []*UnreadableError{e}
	case interface{ Unwrap() []error }:
		var out []*UnreadableError
		for _, inner := range e.Unwrap() {
			out = append(out, Unreadable(inner)...)
		}
		return out
	}
	return Unreadable(errors.Unwrap(err))
}
