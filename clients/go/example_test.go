package client_test

import (
	"context"
	"fmt"

	client "github.com/wsgate/wsgate/clients/go"
)

// backend stands for the application's own backend, which mints a fresh
// single-use ticket per connect (auth.Minter.Ticket).
type backend interface {
	Ticket(ctx context.Context) (string, error)
}

// run is docs/clients.md's Go client, word for word between the braces
// (the docs test checks it).
func run(ctx context.Context, myBackend backend, reload func(topic string)) error {
	c, err := client.New(client.Options{
		URL:     "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod",
		Token:   func(ctx context.Context) (string, error) { return myBackend.Ticket(ctx) }, // fresh per connect
		Topics:  []string{"orders.acme.*"},
		OnEvent: func(e client.Event) { fmt.Println(e.Topic, e.Seq, string(e.Data)) }, // once, in order per topic
		OnGap:   func(g client.Gap) { reload(g.Topic) },                               // history could not fill it
	})
	if err != nil {
		return err
	}
	return c.Run(ctx) // until ctx ends, or the gateway refuses the handshake (a RefusedError)
}

// Example_run compiles docs/clients.md's Go client; it has no Output
// comment, so go test builds it without connecting anywhere.
func Example_run() {
	_ = run
}
