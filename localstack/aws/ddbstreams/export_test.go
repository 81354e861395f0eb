package ddbstreams

import "encoding/json"

// ShardOf is the shard, of shards, of the records of items with this
// string partition key.
func ShardOf(partitionKey string, shards int) int {
	key, _ := json.Marshal(map[string]string{"S": partitionKey})
	return int(hashOf(key) % uint32(shards))
}
