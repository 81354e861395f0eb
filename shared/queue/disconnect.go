package queue

// The $disconnect route's SQS integration and the disconnect queue's event
// source mapping, shared by the CDK stack and the local stack: API Gateway
// sends each closed connection's id to the disconnect queue and the
// disconnect function drains it (shared/gateway, HandleDisconnect).

// DisconnectTemplate is the request template of the $disconnect
// route's SQS integration: a SendMessage in the SQS query protocol whose
// body is the connection's id. The CDK stack deploys it and the local
// gateway renders it, so both send the same message.
const DisconnectTemplate = "Action=SendMessage&MessageBody=$util.urlEncode($context.connectionId)"

// DisconnectBatchSize is the disconnect queue's event source mapping's
// batch size: the connections one invocation removes, all at once.
const DisconnectBatchSize = 10

// DefaultDisconnectMaxConcurrency is the disconnect queue's event source
// mapping's MaximumConcurrency: the account's concurrency the drain may
// take however many connections close at once.
const DefaultDisconnectMaxConcurrency = 10
