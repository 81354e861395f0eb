package devcli

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
)

// listenBus prints every event on a running local stack's bus as a JSON
// line: connection lifecycle (wsgate.connection.opened|closed), client
// publishes (wsgate.client.published), revocations and backends' events.
// It reads the stack's /_wsgate/bus stream on the AWS port, which answers
// this machine only.
func listenBus(ctx context.Context, st Streams, endpoint string) error {
	const path = "/_wsgate/bus"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the local stack's bus at %s: %w (is wsgate dev running?)", endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the local stack's bus at %s: HTTP %d (only a local stack serves %s)", endpoint, resp.StatusCode, path)
	}
	fmt.Fprintf(st.Err, "listening to the bus of %s\n", endpoint)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 2<<20)
	for sc.Scan() {
		fmt.Fprintln(st.Out, sc.Text())
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
