package ddbstreams

import (
	"encoding/json"
	"time"
)

// ShardOf is the shard, of shards, of the records of items with this
// string partition key.
func ShardOf(partitionKey string, shards int) int {
	key, _ := json.Marshal(map[string]string{"S": partitionKey})
	return int(hashOf(key) % uint32(shards))
}

// ArrivalOf is arrivalOf.
func ArrivalOf(created, now time.Time) time.Time { return arrivalOf(created, now) }
