package edge

import (
	"fmt"
	"net/http"

	"github.com/wsgate/wsgate/localstack/aws/awsauth"
)

// Endpoint is the local AWS endpoint's handler: rt behind SigV4 checks and
// a Host check. Only the requests rt routes to its Admin handler (the
// stack's /_wsgate/ dev endpoints, guarded on their own) pass unsigned:
// opts.Exempt is replaced by that rule, so an AWS API call is signed
// whatever its path. A request whose Host is not this machine (LocalHosts
// of addrs, the listener's addresses as configured and as bound) is
// refused with 403, signed or not: the dev credentials are public, so a
// page on a rebinding domain could otherwise sign its own calls.
func Endpoint(rt *Router, addrs []string, opts awsauth.Options) (http.Handler, error) {
	opts.Exempt = rt.ServesAdmin
	signed, err := awsauth.Verify(rt, opts)
	if err != nil {
		return nil, err
	}
	hosts := NewLocalHosts(addrs...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hosts.Admits(r.Host) {
			serviceError(w, http.StatusForbidden, "AccessDeniedException", fmt.Sprintf(
				"Host %q is not this machine: the local AWS endpoint answers 127.0.0.1, localhost or [::1] on its own port only (a guard against DNS rebinding)", r.Host))
			return
		}
		signed.ServeHTTP(w, r)
	}), nil
}
