package publish

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// detailKeys are the detail's fields, spelt as the contract spells them.
func detailKeys() []string {
	return []string{"topic", "payload", "payload_base64", "attributes", "project", "audience", "state", "history", "published_at", "from"}
}

// audienceKeys are the fields of detail.audience.
func audienceKeys() []string { return []string{"orgs", "subs", "roles"} }

// checkKeys refuses what encoding/json would quietly resolve: it matches
// keys case-insensitively and keeps the last of duplicated keys, so
// {"audience":{...},"AUDIENCE":null} decodes to no audience at all and
// reaches everyone. Every key of the detail and of its audience must be
// spelt exactly and appear once, keys of attributes and project once, and
// the audience may not be null. detail has already been decoded, so it is
// valid JSON.
func checkKeys(detail []byte) error {
	return eachKey(detail, "detail", func(key string, value json.RawMessage) error {
		if err := exactKey("detail", key, detailKeys()); err != nil {
			return err
		}
		switch key {
		case "audience":
			if bytes.Equal(bytes.TrimSpace(value), []byte("null")) {
				return fmt.Errorf("%w: detail.audience is null; omit it to reach every allowed subscriber, or list orgs, subs or roles", ErrInvalid)
			}
			return eachKey(value, "detail.audience", func(k string, _ json.RawMessage) error {
				return exactKey("detail.audience", k, audienceKeys())
			})
		case "attributes", "project":
			return eachKey(value, "detail."+key, func(string, json.RawMessage) error { return nil })
		}
		return nil
	})
}

// exactKey refuses a key that is not one of known, naming the spelling a
// case variant stands for.
func exactKey(where, key string, known []string) error {
	for _, k := range known {
		if key == k {
			return nil
		}
		if strings.EqualFold(key, k) {
			return fmt.Errorf("%w: %s key %q must be spelt %q", ErrInvalid, where, key, k)
		}
	}
	return fmt.Errorf("%w: %s key %q is not one of %s", ErrInvalid, where, key, strings.Join(known, ", "))
}

// eachKey calls fn with every key of the JSON object b and its value,
// refusing a key given twice. A b that is not an object is left to the
// typed decoding to judge.
func eachKey(b []byte, where string, fn func(key string, value json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, where, err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("%w: %s has the key %q twice", ErrInvalid, where, key)
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return fmt.Errorf("%w: %s.%s: %v", ErrInvalid, where, key, err)
		}
		if err := fn(key, value); err != nil {
			return err
		}
	}
	return nil
}
