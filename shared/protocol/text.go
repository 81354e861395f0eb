package protocol

import (
	"fmt"
	"strings"

	"github.com/wsgate/wsgate/shared/topic"
)

// parseText reads Digital Rebar's text commands, one per line.
func parseText(s string, maxBatch int) (Command, error) {
	var items []BatchItem
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		cmd, err := parseLine(line)
		if err != nil {
			items = append(items, BatchItem{Err: err})
			continue
		}
		items = append(items, BatchItem{Command: cmd})
	}
	if len(items) > maxBatch {
		return nil, Errorf(nil, CodeTooLarge, "%d lines; at most %d", len(items), maxBatch)
	}
	if len(items) == 1 {
		if items[0].Err != nil {
			return nil, items[0].Err
		}
		return items[0].Command, nil
	}
	return Batch{Items: items}, nil
}

func parseLine(line string) (Command, *Error) {
	verb, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	var dereg bool
	switch verb {
	case TypeRegister:
	case TypeDeregister:
		dereg = true
	default:
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown command %q; text commands are register and deregister", truncate(verb, 32)), Unknown: true}
	}
	typ, rest, ok1 := strings.Cut(arg, ".")
	action, key, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || typ == "" || action == "" || key == "" || strings.ContainsAny(arg, " \t") {
		return nil, &Error{Code: CodeBadRequest, Message: verb + " needs type.action.key"}
	}
	seg := func(s string) string {
		if s == "*" {
			return s
		}
		return topic.EncodeSegment(s)
	}
	p, err := topic.ParsePattern(seg(typ) + "." + seg(action) + "." + seg(key))
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	return Register{Pattern: p, Deregister: dereg}, nil
}
