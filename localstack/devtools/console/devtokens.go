package console

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
)

// DevTokens mints tokens for the console and local tools:
// GET ?sub=alice&topics=demo.>,x.*&org=acme&ttl=1h
// It exists only in the local stack, which signs with a development secret,
// and is served behind stack.DevAccess: no CORS of its own, as any page
// allowed to read a token could act as its holder.
func DevTokens(m auth.Minter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		split := func(k string) []string {
			var out []string
			for _, v := range q[k] {
				for _, s := range strings.Split(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						out = append(out, s)
					}
				}
			}
			return out
		}
		g := auth.Grant{Sub: q.Get("sub"), Type: q.Get("ptype"), Orgs: split("org"), Roles: split("role"), Topics: split("topics"), Subscribe: split("subscribe"), Superuser: q.Get("su") == "true"}
		if g.Sub == "" {
			g.Sub = "console"
		}
		if len(g.Topics) == 0 && !g.Superuser {
			g.Topics = []string{">"}
		}
		if ttl, err := time.ParseDuration(q.Get("ttl")); err == nil {
			g.TTL = ttl
		}
		tok, err := m.Token(g)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"token": tok, "sub": g.Sub})
	})
}
