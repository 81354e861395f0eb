package main

import (
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"

	"github.com/wsgate/wsgate/shared/config"
)

// functionSpec is one function's size and what it may do. The DynamoDB
// actions follow the shared/store methods each function calls (see
// shared/gateway and shared/broadcast):
//
//	connect     PutConnection (TransactWriteItems: Put, Update with the
//	            connection caps; reclaiming expired places: Update, Delete,
//	            ConditionCheck; Query), GetState (GetItem), ClaimTicket
//	            (PutItem), DeleteConnection (below)
//	disconnect  drains the disconnect queue ($disconnect's SQS
//	            integration sends each closed connection's id to it):
//	            DeleteConnection (Query, GetItem, BatchWriteItem;
//	            TransactWriteItems giving places and wildcard holds back:
//	            Update, Delete, ConditionCheck); the queue's event source
//	            mapping receives and deletes the messages
//	message     CountCommands, ChargeCommands, ReserveReplay, ReturnReplay, Authenticate
//	            (UpdateItem, BatchWriteItem), Subscribe
//	            (TransactWriteItems: Update, Put, ConditionCheck),
//	            Unsubscribe (TransactWriteItems: Delete, Update;
//	            BatchWriteItem), ConnectionSubscriptions, History,
//	            CountConnections (Query), GetState, CurrentSeq, TopicSeq
//	            (GetItem), ClaimTicket (PutItem), Refresh
//	            (TransactWriteItems: Update, ConditionCheck)
//	broadcast   BeginEvent (UpdateItem, PutItem, TransactWriteItems: Put;
//	            GetItem when redelivered), ReplaceState (PutItem,
//	            DeleteItem), FinishEvent, leases, ClaimShard (UpdateItem),
//	            PutShard, PutDetail (PutItem), Detail, GetConnection
//	            (GetItem), TopicSeq (GetItem), ReserveReplay, ReturnReplay
//	            (UpdateItem), SubscriberPatterns, Subscribers, History (Query),
//	            ForgetPattern (DeleteItem), DeleteConnection (Query,
//	            BatchWriteItem), Revoke (UpdateItem, Query, GetItem)
//
// IAM has no TransactWriteItems action: each item is authorized as its
// PutItem, UpdateItem, DeleteItem or ConditionCheckItem.
type functionSpec struct {
	name        string
	description string
	// memoryMB also buys CPU and network: Lambda allocates CPU in
	// proportion to memory.
	memoryMB float64
	timeout  time.Duration
	dynamo   []string
	// manage lists the @connections methods: POST replies and events,
	// DELETE closes a connection.
	manage []string
	// sendsTasks: sends to the task queue (auth deadlines, replays,
	// fan-out shards).
	sendsTasks bool
	// retriesTasks: drains the task queue and brings a failed task's
	// message back sooner (ChangeMessageVisibility).
	retriesTasks bool
	// readsSecret: verifies tokens, so reads the HMAC key at start-up.
	readsSecret bool
	// putsEvents: puts events on the stack's bus (copies of client events).
	putsEvents bool
	// reserved is the function's reserved concurrency (0: none).
	reserved func(Settings) int
}

var functionSpecs = []functionSpec{{
	name:        "connect",
	description: "$connect: authenticates the handshake, stores the connection",
	// The handshake waits on it: 512 MB gives a fast cold start (SDK set-up
	// and the secret read) and JWT verification. Its work is a few
	// DynamoDB calls; 10 s is ample and well inside API Gateway's 29 s
	// integration timeout.
	memoryMB:    512,
	timeout:     10 * time.Second,
	dynamo:      []string{"GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchWriteItem"},
	sendsTasks:  true, // the auth-message deadline, the token-expiry check and ?since= replays
	readsSecret: true,
}, {
	name:        "disconnect",
	description: "$disconnect: drains the disconnect queue, removing each closed connection and its subscriptions",
	// A batch of up to queue.DisconnectBatchSize closed connections,
	// removed at once: each deletes at most its subscriptions (2 items
	// each) in batches of 25. Nobody waits on it; a connection it failed
	// to remove comes back from the queue, and TTL cleans up a miss. The
	// disconnect queue's visibility timeout is six times this timeout.
	memoryMB: 256,
	timeout:  10 * time.Second,
	dynamo:   []string{"GetItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchWriteItem"},
}, {
	name:        "message",
	description: "$default: client commands (subscribe, ping, request_current_state, resume, auth, publish, batch)",
	// A batch of 50 commands or a resume of up to 500 events posts frames
	// before the route response; API Gateway stops waiting at 29 s, so
	// running longer would be work nobody receives.
	memoryMB:    512,
	timeout:     29 * time.Second,
	dynamo:      []string{"GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchWriteItem"},
	manage:      []string{"POST", "DELETE"},
	sendsTasks:  true, // the token-expiry check after an auth message or a refresh
	readsSecret: true, // the auth command verifies tokens
	// publish numbers and fans out a client's event here (the broadcast
	// function's work: the same DynamoDB actions and @connections POSTs),
	// then puts a copy on the bus.
	putsEvents: true,
	// Clients choose how many frames they send: reserved concurrency
	// caps the frames running at once, so a flood is throttled here
	// instead of starving $connect and broadcast of the account's pool
	// (none by default: DefaultMessageReservedConcurrency says why).
	reserved: func(s Settings) int { return s.MessageReservedConcurrency },
}, {
	name:        "broadcast",
	description: "Delivers EventBridge events to subscribers and drains the task queue",
	// The fan-out: up to WSGATE_FANOUT_WORKERS parallel PostToConnection
	// calls over kept-alive connections; 1024 MB buys the CPU and network
	// for them. 60 s bounds one event's fan-out and retries; the task
	// queue's visibility timeout is six times this (a failed task comes
	// back sooner: queue.RetryDelay).
	memoryMB:     1024,
	timeout:      60 * time.Second,
	dynamo:       []string{"GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "BatchWriteItem"},
	manage:       []string{"POST", "DELETE"},
	sendsTasks:   true, // re-scheduled auth deadlines and token-expiry checks, fan-out shards
	retriesTasks: true, // a failed task's message made visible again within seconds
	putsEvents:   true, // connection lifecycle events, read from the table's stream
}}

// specNamed is the spec of the function called name, one of functionSpecs.
func specNamed(name string) functionSpec {
	for _, s := range functionSpecs {
		if s.name == name {
			return s
		}
	}
	panic("no function spec " + name)
}

// function is a built function with its role and log group.
type function struct {
	spec functionSpec
	fn   awslambda.Function
	role awsiam.Role
	logs awslogs.LogGroup
}

func (g *gateway) newFunction(spec functionSpec) *function {
	id := strings.ToUpper(spec.name[:1]) + spec.name[1:]
	f := &function{spec: spec}

	f.logs = awslogs.NewLogGroup(g.stack, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		Retention:     g.s.Retention(),
		RemovalPolicy: g.removal,
	})
	// Our own role: only this function's log group, no managed policies.
	f.role = awsiam.NewRole(g.stack, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("wsgate " + g.s.Stage + " " + spec.name + " function"),
	})
	allow := func(resources []*string, actions ...string) {
		f.role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions: jsii.Strings(actions...), Resources: &resources,
		}))
	}
	allow([]*string{f.logs.LogGroupArn()}, "logs:CreateLogStream", "logs:PutLogEvents")

	dynamo := make([]string, len(spec.dynamo))
	for i, a := range spec.dynamo {
		dynamo[i] = "dynamodb:" + a
	}
	allow([]*string{g.table.TableArn()}, dynamo...)
	if len(spec.manage) > 0 {
		var arns []*string
		for _, method := range spec.manage {
			arns = append(arns, g.connectionsArn(method))
		}
		allow(arns, "execute-api:ManageConnections")
	}
	if spec.sendsTasks {
		allow([]*string{g.tasks.QueueArn()}, "sqs:SendMessage") // SendMessageBatch is authorized as SendMessage
	}
	if spec.retriesTasks {
		// The function brings a failed task back sooner itself
		// (queue.Queue.Retry), whatever the event source's grant holds.
		allow([]*string{g.tasks.QueueArn()}, "sqs:ChangeMessageVisibility")
	}
	if spec.putsEvents {
		allow([]*string{g.bus.EventBusArn()}, "events:PutEvents")
	}
	if hook := g.s.FunctionEnv[config.EnvPublishHook]; hook != "" && spec.name == "message" {
		allow([]*string{hookArn(hook)}, "lambda:InvokeFunction")
	}
	if spec.readsSecret && g.cursorKey != nil {
		g.cursorKey.GrantRead(f.role, nil)
	}
	if spec.readsSecret && g.secret != nil {
		allow([]*string{g.secretResource()}, "secretsmanager:GetSecretValue")
		if g.s.JWTSecretKeyArn != "" {
			f.role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Actions:   jsii.Strings("kms:Decrypt"),
				Resources: jsii.Strings(g.s.JWTSecretKeyArn),
				Conditions: &map[string]any{"StringEquals": map[string]any{
					"kms:ViaService": "secretsmanager." + *awscdk.Aws_REGION() + ".amazonaws.com",
				}},
			}))
		}
	}

	// JSON system logs; the functions' own lines are already JSON (slog
	// and the EMF metric lines) and pass through unchanged. EMF lines have
	// no "level", which Lambda reads as INFO: the application log level
	// must never be above INFO or the metrics would be dropped.
	appLevel := awslambda.ApplicationLogLevel_INFO
	if strings.EqualFold(g.s.FunctionEnv[config.EnvLogLevel], "debug") {
		appLevel = awslambda.ApplicationLogLevel_DEBUG
	}
	f.fn = awslambda.NewFunction(g.stack, jsii.String(id), &awslambda.FunctionProps{
		FunctionName:          jsii.String(g.prefix + "-" + spec.name),
		Description:           jsii.String(spec.description),
		Runtime:               awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:          g.architecture(),
		Handler:               jsii.String("bootstrap"),
		Code:                  awslambda.Code_FromAsset(jsii.String(g.s.Zip(spec.name)), nil),
		MemorySize:            jsii.Number(spec.memoryMB),
		Timeout:               awscdk.Duration_Seconds(jsii.Number(spec.timeout.Seconds())),
		Tracing:               awslambda.Tracing_ACTIVE,
		Role:                  f.role,
		Environment:           g.environment(spec),
		LoggingFormat:         awslambda.LoggingFormat_JSON,
		ApplicationLogLevelV2: appLevel,
		SystemLogLevelV2:      awslambda.SystemLogLevel_INFO,
		LogGroup:              f.logs,
		// Reserved concurrency carves capacity out of the account's pool:
		// only the message function may have it, when messageReservedConcurrency
		// sets it.
		ReservedConcurrentExecutions: reserved(spec, g.s),
	})
	return f
}

// reserved is a function's reserved concurrency, nil for none.
func reserved(spec functionSpec, s Settings) *float64 {
	if spec.reserved == nil || spec.reserved(s) <= 0 {
		return nil
	}
	return jsii.Number(float64(spec.reserved(s)))
}

// connectionsArn is the @connections API of this stage for one method:
// arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{method}/@connections/*
func (g *gateway) connectionsArn(method string) *string {
	return g.stack.FormatArn(&awscdk.ArnComponents{
		Service:      jsii.String("execute-api"),
		Resource:     g.api.ApiId(),
		ResourceName: jsii.String(g.s.Stage + "/" + method + "/@connections/*"),
		ArnFormat:    awscdk.ArnFormat_SLASH_RESOURCE_NAME,
	})
}

// environment is what shared/config reads. Every function gets what
// config validation needs (the table, the endpoint, the token algorithm and
// its key reference); only the functions that send tasks get the queue.
// Settings the user did not configure are left out, so the defaults in
// shared/config apply.
func (g *gateway) environment(spec functionSpec) *map[string]*string {
	env := map[string]*string{
		config.EnvTable:              g.table.TableName(),
		config.EnvStage:              jsii.String(g.s.Stage),
		config.EnvManagementEndpoint: g.stage.CallbackUrl(),
		config.EnvJWTAlg:             jsii.String(g.s.JWTAlg),
	}
	if g.secret != nil {
		// The ARN, never the value: connect and message read the value
		// from Secrets Manager at start-up.
		env[config.EnvJWTSecretARN] = g.secret.SecretArn()
	}
	if g.cursorKey != nil {
		// Every function's config check wants it named; only connect and
		// message may read it.
		env[config.EnvCursorKeyARN] = g.cursorKey.SecretArn()
	}
	if g.s.JWTPublicKey != "" {
		env[config.EnvJWTPublicKey] = jsii.String(g.s.JWTPublicKey)
	}
	if g.s.JWKSURL != "" {
		env[config.EnvJWKSURL] = jsii.String(g.s.JWKSURL)
	}
	if spec.sendsTasks {
		env[config.EnvQueueURL] = g.tasks.QueueUrl()
	}
	if spec.putsEvents {
		env[config.EnvEventBus] = g.bus.EventBusName()
	}
	for k, v := range g.s.FunctionEnv {
		env[k] = jsii.String(v)
	}
	return &env
}

// architecture maps the architecture setting to Lambda's.
func (g *gateway) architecture() awslambda.Architecture {
	if g.s.Architecture == "x86_64" {
		return awslambda.Architecture_X86_64()
	}
	return awslambda.Architecture_ARM_64()
}

// hookArn is the publish hook's function ARN: as given, or built from a
// name in the stack's account and region.
func hookArn(hook string) *string {
	if strings.HasPrefix(hook, "arn:") {
		return jsii.String(hook)
	}
	return awscdk.Fn_Join(jsii.String(""), &[]*string{
		jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":lambda:"), awscdk.Aws_REGION(),
		jsii.String(":"), awscdk.Aws_ACCOUNT_ID(), jsii.String(":function:" + hook),
	})
}
