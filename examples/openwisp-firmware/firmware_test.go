// Package firmware_test plays OpenWISP firmware-upgrader's WebSocket
// clients (../shared/seeds/002) against wsgate on the local stack.
package firmware_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const (
	wait      = 10 * time.Second
	operation = "6a0e1c2b-3d4f-4a5b-8c9d-0e1f2a3b4c5d"
	batch     = "b7c8d9e0-f1a2-4b3c-9d4e-5f6a7b8c9d0e"
	device    = "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6"
)

func deployment(t *testing.T) *stack.Stack {
	env := stacktest.LoadEnv(t, "../wsgate.env")
	s := stacktest.Start(t, func(o *stack.Options) { o.Env = env })
	for _, f := range []string{"operation-started.json", "batch-created.json", "device-operation-update.json"} {
		stacktest.PublishFileAndWait(t, s, "events/"+f)
	}
	return s
}

// OpenWISP mints firmware tokens for superusers, and for staff with view or
// change permission, listing the organizations they administer; other
// users get no firmware capability.
func staff(t *testing.T, s *stack.Stack, sub string, orgs ...string) string {
	return mint(t, s, auth.Grant{Sub: sub, Orgs: orgs, Roles: []string{"staff"}, Topics: []string{"firmware.>"}})
}

func mint(t *testing.T, s *stack.Stack, g auth.Grant) string {
	t.Helper()
	tok, err := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(g)
	require.NoError(t, err)
	return tok
}

func scope(t *testing.T, s *stack.Stack, topic, token string) *stacktest.Client {
	t.Helper()
	return stacktest.MustDial(t, s.WebSocketURL, map[string]string{"topic": topic, "token": token})
}

func stateOf(t *testing.T, file string) []string {
	t.Helper()
	var out []string
	for _, f := range stacktest.ReadDetails(t, "events/"+file)[0].State {
		out = append(out, string(f))
	}
	return out
}

func payloadOf(t *testing.T, file string) string {
	t.Helper()
	b, err := json.Marshal(stacktest.ReadDetails(t, "events/"+file)[0].Payload)
	require.NoError(t, err)
	return string(b)
}

func TestFirmware_OperationScope(t *testing.T) {
	s := deployment(t)
	c := scope(t, s, "firmware.operation."+operation, staff(t, s, "staff-1", "acme-org"))

	c.SendJSON(map[string]string{"type": "request_current_state", "operation_id": operation})
	assert.JSONEq(t, stateOf(t, "operation-started.json")[0], string(c.Next(wait)))
	c.Quiet(500 * time.Millisecond) // exactly one message

	c.SendJSON(map[string]string{"type": "request_current_state", "operation_id": "11111111-2222-3333-4444-555555555555"})
	c.SendJSON(map[string]string{"type": "subscribe", "topic": "firmware.>"})
	c.Send(`{"type":"anything_else"}`)
	c.Quiet(500 * time.Millisecond) // a mismatched id and other types are ignored

	stacktest.PublishFileAndWait(t, s, "events/operation-progressed.json")
	assert.JSONEq(t, payloadOf(t, "operation-progressed.json"), string(c.Next(wait)), "operation_update push")
	c.SendJSON(map[string]string{"type": "request_current_state", "operation_id": operation})
	assert.JSONEq(t, stateOf(t, "operation-progressed.json")[0], string(c.Next(wait)), "the state follows the pushes")
}

func TestFirmware_BatchScope(t *testing.T) {
	s := deployment(t)
	c := scope(t, s, "firmware.batch."+batch, staff(t, s, "staff-1", "acme-org"))

	c.SendJSON(map[string]string{"type": "request_current_state", "batch_id": batch})
	got := c.NextJSON(wait)
	assert.Equal(t, "batch_state", got["type"])
	assert.Len(t, got["operations"], 3)
	c.Quiet(500 * time.Millisecond) // exactly one message
	c.SendJSON(map[string]string{"type": "request_current_state", "batch_id": "not-this-batch"})
	c.Quiet(500 * time.Millisecond)

	stacktest.PublishFileAndWait(t, s, "events/operation-progress.json")
	stacktest.PublishFileAndWait(t, s, "events/batch-status.json")
	assert.JSONEq(t, payloadOf(t, "operation-progress.json"), string(c.Next(wait)))
	assert.JSONEq(t, payloadOf(t, "batch-status.json"), string(c.Next(wait)))
}

func TestFirmware_DeviceScopeAnswersUpToFiveOperations(t *testing.T) {
	s := deployment(t)
	c := scope(t, s, "firmware.device."+device, staff(t, s, "staff-1", "acme-org"))

	c.SendJSON(map[string]string{"type": "request_current_state", "device_id": device})
	want := stateOf(t, "device-operation-update.json")
	require.Len(t, want, 5)
	for i, w := range want {
		got := c.NextJSON(wait)
		assert.Equal(t, "UpgradeOperation", got["model"], "frame %d", i)
		b, _ := json.Marshal(got)
		assert.JSONEq(t, w, string(b), "frame %d, in order", i)
	}
	c.Quiet(500 * time.Millisecond)

	stacktest.PublishFileAndWait(t, s, "events/device-operation-update.json")
	assert.JSONEq(t, payloadOf(t, "device-operation-update.json"), string(c.Next(wait)), "operation_update in the UpgradeOperation envelope")
}

func TestFirmware_OnlySuperusersOrStaffOfTheObjectsOrganization(t *testing.T) {
	s := deployment(t)
	op := "firmware.operation." + operation
	for name, tc := range map[string]struct {
		token  string
		status int
	}{
		"superuser":                      {mint(t, s, auth.Grant{Sub: "root", Superuser: true}), http.StatusOK},
		"staff in the organization":      {staff(t, s, "staff-1", "acme-org"), http.StatusOK},
		"staff of another organization":  {staff(t, s, "staff-2", "globex-org"), http.StatusForbidden},
		"user without firmware rights":   {mint(t, s, auth.Grant{Sub: "viewer", Orgs: []string{"acme-org"}}), http.StatusForbidden},
		"not logged in":                  {"", http.StatusUnauthorized},
		"unknown operation (for anyone)": {"", 0},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.status == 0 {
				_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"topic": "firmware.operation.00000000-0000-0000-0000-000000000000", "token": mint(t, s, auth.Grant{Sub: "root", Superuser: true})}, nil)
				require.Error(t, err)
				assert.Equal(t, http.StatusNotFound, resp.StatusCode)
				return
			}
			q := map[string]string{"topic": op}
			if tc.token != "" {
				q["token"] = tc.token
			}
			c, resp, err := stacktest.Dial(t, s.WebSocketURL, q, nil)
			if tc.status == http.StatusOK {
				require.NoError(t, err)
				c.SendJSON(map[string]string{"type": "request_current_state", "operation_id": operation})
				c.Expect("operation_update", wait)
				return
			}
			require.Error(t, err, "closed immediately")
			assert.Equal(t, tc.status, resp.StatusCode)
		})
	}
}
