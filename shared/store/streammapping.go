package store

import "time"

// The event source mapping that feeds the table's stream to the broadcast
// function, as the CDK stack configures it and the local stack runs it:
// both read these, so they cannot drift apart.
//
// What a stream handler must assume from them: a batch (up to
// StreamBatchSize records, gathered for up to StreamBatchWindow) is
// ordered per item only; a batch whose invocation fails is split in halves
// (StreamBisectOnError, which costs no retry), each half retried up to
// StreamRetryAttempts times and then discarded, only its metadata going to
// the on-failure destination (the events DLQ); records older than 24 hours
// (the stream's retention; the mapping sets no shorter maximum age) are
// discarded the same way. So a handler's error means "apply this batch
// again, maybe in halves, maybe never": whatever it did before failing is
// done again, and what it did not do may never be done.
const (
	StreamBatchSize     = 100
	StreamBatchWindow   = time.Second
	StreamRetryAttempts = 10
	StreamBisectOnError = true
	// StreamParallelization is Lambda's ParallelizationFactor: concurrent
	// batches per shard (each item always in the same one). 1 is Lambda's
	// default, which the CDK stack leaves unset.
	StreamParallelization = 1
)
