// Command streamfail stands in for broadcast in tests of the table's
// stream mapping: it fails every stream batch holding the record of an
// item whose partition key starts with "C#poison", and logs the partition
// key of each record of the batches it takes. Other events succeed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Records []struct {
		Dynamodb struct {
			Keys map[string]map[string]string
		} `json:"dynamodb"`
	}
}

func handle(_ context.Context, e event) error {
	var keys []string
	for _, r := range e.Records {
		pk := r.Dynamodb.Keys["pk"]["S"]
		if strings.HasPrefix(pk, "C#poison") {
			return errors.New("poison record")
		}
		keys = append(keys, pk)
	}
	for _, k := range keys {
		b, _ := json.Marshal(map[string]string{"msg": "stream record", "pk": k})
		fmt.Println(string(b))
	}
	return nil
}

func main() { lambda.Start(handle) }
