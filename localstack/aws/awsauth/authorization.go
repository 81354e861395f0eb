package awsauth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

const (
	algorithm = "AWS4-HMAC-SHA256"
	// amzDateFormat is the ISO 8601 basic format of X-Amz-Date.
	amzDateFormat = "20060102T150405Z"
)

// authorization is a parsed SigV4 Authorization header:
//
//	AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/dynamodb/aws4_request,
//	SignedHeaders=host;x-amz-date, Signature=<64 hex digits>
type authorization struct {
	accessKeyID   string
	date          string // YYYYMMDD of the credential scope
	region        string
	service       string
	signedHeaders []string // lower case, as listed
	signature     string
	signedAt      time.Time // X-Amz-Date, set once checked
}

// errUnsupportedScheme is an Authorization header that is not SigV4 at all.
var errUnsupportedScheme = errors.New("the local endpoint verifies " + algorithm + " only")

// parseAuthorization parses a SigV4 Authorization header. Its errors are
// the message of AWS's IncompleteSignatureException.
func parseAuthorization(h string) (authorization, error) {
	rest, ok := strings.CutPrefix(h, algorithm+" ")
	if !ok {
		return authorization{}, errUnsupportedScheme
	}
	params := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			//lint:ignore ST1005 AWS words it so; the message goes back to the client as AWS would send it
			return authorization{}, fmt.Errorf("Authorization header parameter %q is not of the form key=value", part)
		}
		params[k] = v
	}
	var missing []string
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if params[k] == "" {
			missing = append(missing, fmt.Sprintf("Authorization header requires '%s' parameter.", k))
		}
	}
	if len(missing) > 0 {
		return authorization{}, errors.New(strings.Join(missing, " "))
	}
	a, err := parseCredential(params["Credential"])
	if err != nil {
		return authorization{}, err
	}
	a.signedHeaders = strings.Split(params["SignedHeaders"], ";")
	a.signature = params["Signature"]
	return a, nil
}

// parseCredential parses AKID/DATE/REGION/SERVICE/aws4_request.
func parseCredential(c string) (authorization, error) {
	parts := strings.Split(c, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" || parts[2] == "" || parts[3] == "" {
		//lint:ignore ST1005 AWS words it so; the message goes back to the client as AWS would send it
		return authorization{}, fmt.Errorf("Credential %q is not of the form <access key>/<date>/<region>/<service>/aws4_request", c)
	}
	if _, err := time.Parse("20060102", parts[1]); err != nil {
		//lint:ignore ST1005 AWS words it so; the message goes back to the client as AWS would send it
		return authorization{}, fmt.Errorf("Credential scope date %q is not of the form YYYYMMDD", parts[1])
	}
	return authorization{accessKeyID: parts[0], date: parts[1], region: parts[2], service: parts[3]}, nil
}

// signs reports whether the header list includes name (lower case).
func (a authorization) signs(name string) bool { return slices.Contains(a.signedHeaders, name) }
