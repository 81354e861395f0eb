package stack_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
)

// The harsh stack holds DynamoDB keys to AWS's ceilings and tells what
// each key consumed at /_wsgate/capacity, to this machine's programs only.
func TestCapacity_ServedAtWsgateCapacity(t *testing.T) {
	s := stacktest.Start(t)
	stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "cap", Topics: []string{"t.>"}})})

	resp, err := http.Get(s.AWSEndpoint + "/_wsgate/capacity")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st ddbproxy.CapacityStats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	assert.InDelta(t, 1, st.Scale, 1e-9, "on at AWS's ceilings by default")
	assert.InDelta(t, 1000, st.WriteCeiling, 1e-9)
	assert.Positive(t, st.WriteUnits, "the connect wrote its records")
	assert.NotEmpty(t, st.Keys)
	assert.Zero(t, st.Throttled)

	req, err := http.NewRequest(http.MethodGet, s.AWSEndpoint+"/_wsgate/capacity", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://evil.example.net")
	cross, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	cross.Body.Close()
	assert.Equal(t, http.StatusForbidden, cross.StatusCode, "a web page may not read it")
}

// At a capacity scale, only the keys whose load grows with the audience
// (ScaledKeyPrefixes) are held to the scaled ceilings: a subscriber
// bucket is, a connection's own keys are not.
func TestCapacity_OnlyAudienceKeysAreScaled(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.CapacityScale = 0.01 })
	stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "scaled", Topics: []string{"t.>"}, Subscribe: []string{"t.a"}})})
	st := s.Capacity()
	assert.InDelta(t, 30, st.ReadCeiling, 1e-9)
	var scaled, kept []string
	for _, k := range st.Keys {
		if k.Scaled {
			scaled = append(scaled, k.Key)
		} else {
			kept = append(kept, k.Key)
		}
	}
	assert.Contains(t, scaled, "P#t.a", "the pattern's subscriber key")
	for _, k := range scaled {
		assert.Regexp(t, `^(P|B|Q|R)#`, k)
	}
	assert.NotEmpty(t, kept, "the connection's keys keep AWS's ceilings")
	for _, k := range kept {
		assert.NotRegexp(t, `^(P|B|Q|R)#`, k)
	}
}
