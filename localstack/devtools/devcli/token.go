package devcli

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
)

// DevSecret is the local stack's default HS256 secret.
const DevSecret = "wsgate-dev-secret"

// tokenFlags are the claims flags token and listen share.
type tokenFlags struct {
	secret, sub, ptype, mode, profile, issuer, audience, jti string
	orgs, roles, topics, subscribe, publish                  list
	su, ticket                                               bool
	ttl                                                      time.Duration
}

func (t *tokenFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.secret, "secret", envOr(config.EnvJWTSecret, DevSecret), "HS256 secret ($"+config.EnvJWTSecret+")")
	fs.StringVar(&t.sub, "sub", "", "principal id (sub)")
	fs.StringVar(&t.ptype, "ptype", "", "principal type: user (default), participant, device, service")
	fs.Var(&t.orgs, "org", "organization id (repeat or comma-separate)")
	fs.Var(&t.roles, "role", "role (repeat or comma-separate)")
	fs.Var(&t.topics, "topics", "capability patterns, e.g. 'demo.>' (repeat or comma-separate)")
	fs.Var(&t.subscribe, "auto-subscribe", "patterns subscribed at connect (repeat or comma-separate)")
	fs.Var(&t.publish, "publish", "patterns the principal may publish to over its connection, e.g. 'chat.>' (repeat or comma-separate)")
	fs.StringVar(&t.jti, "jti", "", "token id (jti): what a revocation of this one token names")
	fs.BoolVar(&t.su, "su", false, "superuser: may read every topic")
	fs.StringVar(&t.mode, "mode", "", "push: the connection ignores commands but ping and request_current_state")
	fs.StringVar(&t.profile, "profile", "", "limits profile from WSGATE_PROFILES")
	fs.StringVar(&t.issuer, "issuer", envOr(config.EnvJWTIssuer, ""), "iss claim")
	fs.StringVar(&t.audience, "audience", envOr(config.EnvJWTAudience, ""), "aud claim")
	fs.DurationVar(&t.ttl, "ttl", 0, "lifetime (default 1h; tickets 60s)")
	fs.BoolVar(&t.ticket, "ticket", false, "mint a single-use ticket (jti, short lifetime)")
}

func (t *tokenFlags) mint() (string, error) {
	if t.sub == "" {
		return "", errors.New("--sub is required")
	}
	if t.mode != "" && t.mode != "push" {
		return "", fmt.Errorf("--mode %q: the only mode is push", t.mode)
	}
	m := auth.Minter{Alg: "HS256", Key: []byte(t.secret), Issuer: t.issuer, Audience: t.audience}
	g := auth.Grant{
		Sub: t.sub, Type: t.ptype, Orgs: t.orgs, Roles: t.roles, Superuser: t.su,
		Topics: t.topics, Subscribe: t.subscribe, Publish: t.publish, Mode: t.mode, Profile: t.profile, TTL: t.ttl, ID: t.jti,
	}
	if t.ticket {
		return m.Ticket(g)
	}
	return m.Token(g)
}

// Token prints a token (or, with --url, a ready connect URL).
func Token(args []string, st Streams) error {
	fs := newFlags("token", st)
	var t tokenFlags
	t.register(fs)
	connect := fs.String("url", "", "print a connect URL on this WebSocket endpoint instead of the bare token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tok, err := t.mint()
	if err != nil {
		return err
	}
	if *connect != "" {
		u, err := auth.ConnectURL(*connect, tok, url.Values{})
		if err != nil {
			return err
		}
		fmt.Fprintln(st.Out, u)
		return nil
	}
	fmt.Fprintln(st.Out, tok)
	return nil
}
