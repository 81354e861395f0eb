package devcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
)

// Revoke publishes a wsgate.revoke event: the principal's (or one token's)
// connections close and it is refused until --until. With lift (wsgate
// unrevoke) it ends such a ban now instead.
func Revoke(ctx context.Context, args []string, st Streams, lift bool) error {
	name := "revoke"
	if lift {
		name = "unrevoke"
	}
	fs := newFlags(name, st)
	stage := envOr(config.EnvStage, "local")
	bus := fs.String("bus", envOr("WSGATE_BUS", publish.BusName(stage)), "event bus name or ARN")
	endpoint := fs.String("endpoint", "", "AWS endpoint, e.g. http://127.0.0.1:4566 for the local stack (default: $AWS_ENDPOINT_URL, else AWS)")
	region := fs.String("region", "", "AWS region (default from the AWS configuration, us-east-1 locally)")
	principal := fs.String("principal", "", `the principal: "<ptype>:<sub>" or a sub, e.g. user:42`)
	tokenID := fs.String("token-id", "", "only this token (its jti)")
	var until *string
	var forDur *time.Duration
	if !lift {
		until = fs.String("until", "", "RFC 3339 time the ban ends (default: now + WSGATE_MAX_TOKEN_LIFETIME, set by the gateway)")
		forDur = fs.Duration("for", 0, "ban for this long instead of --until, e.g. 2h")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *principal == "" {
		return errors.New("--principal is required")
	}
	r := publish.Revocation{Principal: *principal, TokenID: *tokenID, Lift: lift}
	if !lift {
		switch {
		case *until != "" && *forDur != 0:
			return errors.New("give --until or --for, not both")
		case *forDur != 0:
			r.Until = time.Now().Add(*forDur).UTC().Truncate(time.Second)
		case *until != "":
			t, err := time.Parse(time.RFC3339, *until)
			if err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			r.Until = t
		}
	}
	// The gateway's own check, before sending: a refusal says why here.
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := publish.ParseRevocation(b, time.Now(), time.Hour); err != nil {
		return fmt.Errorf("refused: %w", err)
	}
	client, err := eventBridgeClient(ctx, *endpoint, *region)
	if err != nil {
		return err
	}
	if err := (publish.Publisher{Client: client, Bus: *bus}).Revoke(ctx, r); err != nil {
		return err
	}
	what := r.Principal
	if r.TokenID != "" {
		what += " token " + r.TokenID
	}
	switch {
	case lift:
		fmt.Fprintf(st.Out, "lifted the ban of %s (via %s)\n", what, *bus)
	case r.Until.IsZero():
		fmt.Fprintf(st.Out, "revoked %s for the longest token lifetime (via %s)\n", what, *bus)
	default:
		fmt.Fprintf(st.Out, "revoked %s until %s (via %s)\n", what, r.Until.Format(time.RFC3339), *bus)
	}
	return nil
}
