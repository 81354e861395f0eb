package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2integrations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdadestinations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// Delivery retry settings for EventBridge -> broadcast. The broadcast
// function returns an error only when a retry can help (a storage failure,
// or another attempt holding the event); it never redelivers an event
// that reached its subscribers (that would duplicate it for everyone).
const (
	// eventMaxAgeHours bounds how long EventBridge and Lambda keep trying:
	// a late event still updates stored state and history, which clients
	// read with request_current_state and resume.
	eventMaxAgeHours = 1
	// eventBridgeRetries covers failures to invoke (Lambda's async queue
	// rarely refuses); EventBridge backs off exponentially within the age.
	eventBridgeRetries = 20
	// lambdaAsyncRetries is Lambda's maximum for asynchronous invocations
	// (it waits about 1 and then 2 minutes between attempts).
	lambdaAsyncRetries = 2
	// dlqRetentionDays: the longest SQS keeps messages, for inspection.
	dlqRetentionDays = 14
)

// The disconnect queue: $disconnect sends each closed connection's id to
// it, the disconnect function drains it (disconnectRoute, disconnectDrain).
const (
	// disconnectRetentionDays is SQS's default, set rather than left to
	// it: a backlog the drain cannot take (its mapping disabled, the
	// function failing for days) is kept that long, past the connections'
	// TTL, after which there is nothing left to remove. A message that
	// went to the DLQ keeps its first enqueue time there, so the DLQ's
	// longer retention leaves it days for inspection.
	disconnectRetentionDays = 4
	// disconnectIntegrationTimeout bounds API Gateway's SendMessage call
	// (tens of milliseconds as a rule): nobody waits on $disconnect, and
	// a slow moment of SQS should not lose the message, but a hung call
	// need not hold on for API Gateway's 29 s.
	disconnectIntegrationTimeout = 10 * time.Second
)

// accessLogFormat is one JSON line per connect, message and disconnect.
// It records no query string, header, cookie, body or token: tokens may
// travel in the query string (?token=), a header or a cookie.
const accessLogFormat = `{"requestId":"$context.requestId","extendedRequestId":"$context.extendedRequestId",` +
	`"ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","routeKey":"$context.routeKey",` +
	`"eventType":"$context.eventType","status":"$context.status","connectionId":"$context.connectionId",` +
	`"messageId":"$context.messageId","integrationStatus":"$context.integration.status",` +
	`"integrationLatency":"$context.integrationLatency","integrationError":"$context.integration.error",` +
	`"error":"$context.error.message","errorType":"$context.error.responseType"}`

// GatewayStackProps configure the stack.
type GatewayStackProps struct {
	awscdk.StackProps
	Settings Settings
}

// gateway holds what the stack's parts share while it is being built.
type gateway struct {
	stack     awscdk.Stack
	s         Settings
	prefix    string
	removal   awscdk.RemovalPolicy
	api       awsapigatewayv2.WebSocketApi
	stage     awsapigatewayv2.WebSocketStage
	table     awsdynamodb.Table
	tasks     awssqs.Queue
	taskDLQ   awssqs.Queue
	eventsDLQ awssqs.Queue
	// disconnects holds closed connections' ids ($disconnect's
	// integration sends them), which the disconnect function drains.
	disconnects   awssqs.Queue
	disconnectDLQ awssqs.Queue
	bus           awsevents.EventBus
	secret        awssecretsmanager.ISecret
	// cursorKey seals presence cursors when tokens are RS256/ES256 (no
	// HMAC secret to derive it from) and presence topics are set.
	cursorKey awssecretsmanager.ISecret
	functions map[string]*function
}

// NewGatewayStack builds the production gateway: the WebSocket API, the
// four functions, the table, the bus, the task and disconnect queues and
// their alarms.
func NewGatewayStack(scope constructs.Construct, id string, props *GatewayStackProps) (awscdk.Stack, error) {
	s := props.Settings
	if err := s.CheckZips(); err != nil {
		return nil, err
	}
	pattern, err := rulePattern()
	if err != nil {
		return nil, err
	}
	pk, sk, err := tableKeys()
	if err != nil {
		return nil, err
	}

	sp := props.StackProps
	if sp.Description == nil {
		sp.Description = jsii.String(fmt.Sprintf("wsgate %s: serverless WebSocket event gateway (API Gateway WebSocket API, Lambda, DynamoDB, EventBridge)", s.Stage))
	}
	stack := awscdk.NewStack(scope, jsii.String(id), &sp)
	g := &gateway{
		stack: stack, s: s, prefix: "wsgate-" + s.Stage,
		removal: awscdk.RemovalPolicy_DESTROY, functions: map[string]*function{},
	}
	if s.Prod {
		g.removal = awscdk.RemovalPolicy_RETAIN
	}

	// The table: one definition, from shared/store. Items carry their own
	// TTL; PITR guards against a bad deploy or operator error.
	g.table = awsdynamodb.NewTable(stack, jsii.String("Table"), &awsdynamodb.TableProps{
		PartitionKey:        pk,
		SortKey:             sk,
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		TimeToLiveAttribute: jsii.String(store.TTLAttribute),
		// Connection lifecycle events: the broadcast function reads the
		// stream (store.CreateTableInput has the same).
		Stream: awsdynamodb.StreamViewType_NEW_AND_OLD_IMAGES,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		Encryption:         awsdynamodb.TableEncryption_AWS_MANAGED,
		DeletionProtection: jsii.Bool(s.Prod),
		RemovalPolicy:      g.removal,
	})

	g.secret = g.jwtSecret()
	g.cursorKey = g.cursorSecret()
	g.queues()
	g.webSocketAPI()
	g.bus = awsevents.NewEventBus(stack, jsii.String("Bus"), &awsevents.EventBusProps{
		EventBusName: jsii.String(publish.BusName(s.Stage)),
		Description:  jsii.String("wsgate " + s.Stage + ": publish events with detail.topic here; they reach the topic's WebSocket subscribers"),
	})

	for _, spec := range functionSpecs {
		g.functions[spec.name] = g.newFunction(spec)
	}
	g.routes()
	g.disconnectDrain()
	g.broadcastSources(pattern)
	g.customDomain()
	g.monitoring()
	g.outputs()
	g.suppressions()
	return stack, nil
}

// rulePattern is publish.RulePattern as the CDK's EventPattern. A key other
// than detail would be dropped silently, so it is refused.
func rulePattern() (*awsevents.EventPattern, error) {
	var p map[string]any
	if err := json.Unmarshal([]byte(publish.RulePattern), &p); err != nil {
		return nil, fmt.Errorf("publish.RulePattern: %w", err)
	}
	detail, ok := p["detail"].(map[string]any)
	if !ok || len(p) != 1 {
		return nil, fmt.Errorf("publish.RulePattern %s: the stack supports a pattern on detail only", publish.RulePattern)
	}
	return &awsevents.EventPattern{Detail: &detail}, nil
}

// tableKeys reads the key schema from store.CreateTableInput, the table's
// one definition, so the stack and the local stack cannot disagree.
func tableKeys() (pk, sk *awsdynamodb.Attribute, err error) {
	in := store.CreateTableInput("wsgate")
	if in.BillingMode != "PAY_PER_REQUEST" {
		return nil, nil, fmt.Errorf("store.CreateTableInput: billing mode %s; the stack is on-demand", in.BillingMode)
	}
	types := map[string]awsdynamodb.AttributeType{}
	for _, d := range in.AttributeDefinitions {
		switch d.AttributeType {
		case "S":
			types[*d.AttributeName] = awsdynamodb.AttributeType_STRING
		case "N":
			types[*d.AttributeName] = awsdynamodb.AttributeType_NUMBER
		case "B":
			types[*d.AttributeName] = awsdynamodb.AttributeType_BINARY
		}
	}
	for _, k := range in.KeySchema {
		a := &awsdynamodb.Attribute{Name: k.AttributeName, Type: types[*k.AttributeName]}
		switch k.KeyType {
		case "HASH":
			pk = a
		case "RANGE":
			sk = a
		}
	}
	if pk == nil || sk == nil || pk.Type == "" || sk.Type == "" ||
		*pk.Name != store.PartitionKey || *sk.Name != store.SortKey {
		return nil, nil, fmt.Errorf("store.CreateTableInput: want keys %s/%s with types", store.PartitionKey, store.SortKey)
	}
	return pk, sk, nil
}

// jwtSecret is the HMAC key in Secrets Manager: the user's (jwtSecretArn)
// or a generated 64-character random string. Nil for RS256/ES256, whose
// public key or JWKS URL is not secret.
func (g *gateway) jwtSecret() awssecretsmanager.ISecret {
	if !g.s.HMAC() {
		return nil
	}
	if g.s.JWTSecretArn != "" {
		// A partial ARN (settings refuse a complete one: see checkSecretArn).
		return awssecretsmanager.Secret_FromSecretAttributes(g.stack, jsii.String("JwtSecret"), &awssecretsmanager.SecretAttributes{
			SecretPartialArn: jsii.String(g.s.JWTSecretArn),
		})
	}
	return awssecretsmanager.NewSecret(g.stack, jsii.String("JwtSecret"), &awssecretsmanager.SecretProps{
		Description: jsii.String("wsgate " + g.s.Stage + ": HMAC key (" + g.s.JWTAlg + ") that signs client tokens; backends read it to mint them"),
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			PasswordLength:     jsii.Number(64),
			ExcludePunctuation: jsii.Bool(true), // letters and digits: safe in shells and env files
		},
		RemovalPolicy: g.removal,
	})
}

// cursorSecret is a generated key for presence cursors, where no HMAC
// token secret can stand in for it (RS256/ES256 with presence topics).
func (g *gateway) cursorSecret() awssecretsmanager.ISecret {
	if g.s.HMAC() || g.s.FunctionEnv[config.EnvPresenceTopics] == "" {
		return nil
	}
	return awssecretsmanager.NewSecret(g.stack, jsii.String("CursorKey"), &awssecretsmanager.SecretProps{
		Description: jsii.String("wsgate " + g.s.Stage + ": the key presence cursors are sealed with (nobody else needs it)"),
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			PasswordLength: jsii.Number(64), ExcludePunctuation: jsii.Bool(true),
		},
		RemovalPolicy: g.removal,
	})
}

// secretResource is what GetSecretValue is granted on: a partial ARN
// matches the secret's suffix with "-??????".
func (g *gateway) secretResource() *string {
	if g.secret.SecretFullArn() != nil {
		return g.secret.SecretFullArn()
	}
	return jsii.String(*g.secret.SecretArn() + "-??????")
}

func (g *gateway) queues() {
	sqsQueue := func(id, name string, props *awssqs.QueueProps) awssqs.Queue {
		props.QueueName = jsii.String(g.prefix + "-" + name)
		props.Encryption = awssqs.QueueEncryption_SQS_MANAGED
		props.EnforceSSL = jsii.Bool(true)
		return awssqs.NewQueue(g.stack, jsii.String(id), props)
	}
	g.taskDLQ = sqsQueue("TaskDeadLetterQueue", "tasks-dlq", &awssqs.QueueProps{
		RetentionPeriod:     awscdk.Duration_Days(jsii.Number(dlqRetentionDays)),
		MaxMessageSizeBytes: jsii.Number(queue.MaxMessageBytes), // holds any task the queue does
	})
	// AWS advises a visibility timeout of at least six times the consuming
	// function's timeout, so a batch retried after throttling is not
	// delivered to a second consumer while the first still runs.
	g.tasks = sqsQueue("TaskQueue", "tasks", &awssqs.QueueProps{
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(6 * specNamed("broadcast").timeout.Seconds())),
		// A failed task comes back after queue.RetryDelay, not this
		// timeout (broadcast shortens it), for queue.MaxReceives receives.
		DeadLetterQueue: &awssqs.DeadLetterQueue{Queue: g.taskDLQ, MaxReceiveCount: jsii.Number(queue.MaxReceives)},
		// The largest task the functions send (queue.MaxMessageBytes, a
		// fan-out shard carries its event's detail), set rather than left
		// to SQS's default, which has changed over time.
		MaxMessageSizeBytes: jsii.Number(queue.MaxMessageBytes),
	})
	// One queue for events that never reached the broadcast function
	// (EventBridge's target DLQ) or failed in it after Lambda's retries
	// (the asynchronous on-failure destination).
	g.eventsDLQ = sqsQueue("EventDeadLetterQueue", "events-dlq", &awssqs.QueueProps{
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(dlqRetentionDays)),
	})
	// A closed connection the disconnect function failed to remove comes
	// back after the visibility timeout (six times the function's, as
	// for the task queue), for queue.MaxReceives receives, as in the
	// local stack: about ten minutes, and over the 5 Lambda advises so
	// that batches throttled by a busy account are not dead-lettered.
	// Then it waits in the DLQ, and the next fan-out's 410 or the TTL
	// removes the connection.
	g.disconnectDLQ = sqsQueue("DisconnectDeadLetterQueue", "disconnects-dlq", &awssqs.QueueProps{
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(dlqRetentionDays)),
	})
	g.disconnects = sqsQueue("DisconnectQueue", "disconnects", &awssqs.QueueProps{
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(6 * specNamed("disconnect").timeout.Seconds())),
		RetentionPeriod:   awscdk.Duration_Days(jsii.Number(disconnectRetentionDays)),
		DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: g.disconnectDLQ, MaxReceiveCount: jsii.Number(queue.MaxReceives)},
	})
}

// webSocketAPI creates the API and its stage; routes are added once the
// functions exist (they need the stage's endpoint in their environment).
func (g *gateway) webSocketAPI() {
	g.api = awsapigatewayv2.NewWebSocketApi(g.stack, jsii.String("WebSocketApi"), &awsapigatewayv2.WebSocketApiProps{
		ApiName:     jsii.String(g.prefix),
		Description: jsii.String("wsgate " + g.s.Stage + ": WebSocket clients connect here"),
	})

	accessLogs := awslogs.NewLogGroup(g.stack, jsii.String("AccessLogs"), &awslogs.LogGroupProps{
		Retention:     g.s.Retention(),
		RemovalPolicy: g.removal,
	})
	g.stage = awsapigatewayv2.NewWebSocketStage(g.stack, jsii.String("Stage"), &awsapigatewayv2.WebSocketStageProps{
		WebSocketApi: g.api,
		StageName:    jsii.String(g.s.Stage),
		AutoDeploy:   jsii.Bool(true),
		Description:  jsii.String("wsgate " + g.s.Stage),
		// The stage's default route throttling: API Gateway applies it to
		// each route on its own ($connect, $disconnect, $default each get
		// this rate and burst), not to the stage as a whole, all within the
		// account's regional 10,000 requests/s (5,000 burst); new
		// connections are also held to the account's 500/s. The functions
		// also limit each connection and principal.
		Throttle: &awsapigatewayv2.ThrottleSettings{
			RateLimit:  jsii.Number(g.s.ThrottleRate),
			BurstLimit: jsii.Number(g.s.ThrottleBurst),
		},
	})
	cfnStage := g.stage.Node().DefaultChild().(awsapigatewayv2.CfnStage)
	cfnStage.SetAccessLogSettings(&awsapigatewayv2.CfnStage_AccessLogSettingsProperty{
		// API Gateway wants the log group ARN without the ":*" suffix.
		DestinationArn: g.stack.FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("logs"), Resource: jsii.String("log-group"),
			ResourceName: accessLogs.LogGroupName(), ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME,
		}),
		Format: jsii.String(accessLogFormat),
	})

	if g.s.APIGatewayCloudWatchRole {
		// API Gateway writes WebSocket access logs with the account's
		// CloudWatch role (one per account and region, shared by every
		// API there). The role is kept when the stack is deleted so other
		// APIs' logging keeps working.
		role := awsiam.NewRole(g.stack, jsii.String("ApiGatewayCloudWatchRole"), &awsiam.RoleProps{
			AssumedBy:   awsiam.NewServicePrincipal(jsii.String("apigateway.amazonaws.com"), nil),
			Description: jsii.String("API Gateway's account-wide role for CloudWatch Logs (this account and region); set by wsgate"),
			InlinePolicies: &map[string]awsiam.PolicyDocument{
				"PushToCloudWatchLogs": awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{
					Statements: &[]awsiam.PolicyStatement{awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
						Actions: jsii.Strings("logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups",
							"logs:DescribeLogStreams", "logs:PutLogEvents", "logs:GetLogEvents", "logs:FilterLogEvents"),
						Resources: jsii.Strings(*g.stack.FormatArn(&awscdk.ArnComponents{
							Service: jsii.String("logs"), Resource: jsii.String("*"), ArnFormat: awscdk.ArnFormat_NO_RESOURCE_NAME,
						})),
					})},
				}),
			},
		})
		role.ApplyRemovalPolicy(awscdk.RemovalPolicy_RETAIN)
		account := awsapigateway.NewCfnAccount(g.stack, jsii.String("ApiGatewayAccount"), &awsapigateway.CfnAccountProps{
			CloudWatchRoleArn: role.RoleArn(),
		})
		cfnStage.Node().AddDependency(account)
	}
}

// routes connects $connect and $default to their functions ($default
// returns the message function's reply to the client: a two-way route)
// and $disconnect to the disconnect queue.
func (g *gateway) routes() {
	route := func(key, fn string, twoWay bool) {
		f := g.functions[fn].fn
		g.api.AddRoute(jsii.String(key), &awsapigatewayv2.WebSocketRouteOptions{
			Integration:    awsapigatewayv2integrations.NewWebSocketLambdaIntegration(jsii.String(*f.Node().Id()+"Integration"), f, nil),
			ReturnResponse: jsii.Bool(twoWay),
		})
	}
	route("$connect", "connect", false)
	g.disconnectRoute()
	route("$default", "message", true)
}

// disconnectRoute sends each closed connection's id to the disconnect
// queue instead of invoking the disconnect function (shared/gateway's
// disconnect.go says why): an AWS service integration that calls SQS
// SendMessage in the query protocol, with queue.DisconnectTemplate,
// as a role that may do only that.
func (g *gateway) disconnectRoute() {
	role := awsiam.NewRole(g.stack, jsii.String("DisconnectQueueRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("apigateway.amazonaws.com"), nil),
		Description: jsii.String("wsgate " + g.s.Stage + ": the $disconnect route sends closed connections' ids to the disconnect queue"),
		// Inline: the permission comes with the role, which the
		// integration references (a separate policy could attach later).
		InlinePolicies: &map[string]awsiam.PolicyDocument{
			"SendToDisconnectQueue": awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{
				Statements: &[]awsiam.PolicyStatement{awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
					Actions: jsii.Strings("sqs:SendMessage"), Resources: &[]*string{g.disconnects.QueueArn()},
				})},
			}),
		},
	})
	// The route keeps the construct path (so the logical id) that
	// api.AddRoute gave it when it invoked the function: CloudFormation
	// then updates the deployed route in place, where a route under a new
	// id would be created beside it and refused (one route per key).
	scope := constructs.NewConstruct(g.api, jsii.String("$disconnect-Route"))
	integration := awsapigatewayv2.NewCfnIntegration(scope, jsii.String("DisconnectQueueIntegration"), &awsapigatewayv2.CfnIntegrationProps{
		ApiId:             g.api.ApiId(),
		Description:       jsii.String("$disconnect: SQS SendMessage of the connection's id to " + g.prefix + "-disconnects"),
		IntegrationType:   jsii.String("AWS"),
		IntegrationMethod: jsii.String("POST"),
		// arn:{partition}:apigateway:{region}:sqs:path/{account}/{queue name}
		IntegrationUri: awscdk.Fn_Join(jsii.String(""), &[]*string{
			jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":apigateway:"), awscdk.Aws_REGION(),
			jsii.String(":sqs:path/"), awscdk.Aws_ACCOUNT_ID(), jsii.String("/"), g.disconnects.QueueName(),
		}),
		CredentialsArn: role.RoleArn(),
		RequestParameters: &map[string]*string{
			"integration.request.header.Content-Type": jsii.String("'application/x-www-form-urlencoded'"),
		},
		// One template, always chosen; NEVER: no request reaches SQS untemplated.
		RequestTemplates:            &map[string]*string{"$default": jsii.String(queue.DisconnectTemplate)},
		TemplateSelectionExpression: jsii.String(`\$default`),
		PassthroughBehavior:         jsii.String("NEVER"),
		TimeoutInMillis:             jsii.Number(float64(disconnectIntegrationTimeout.Milliseconds())),
	})
	awsapigatewayv2.NewCfnRoute(scope, jsii.String("Resource"), &awsapigatewayv2.CfnRouteProps{
		ApiId:    g.api.ApiId(),
		RouteKey: jsii.String("$disconnect"),
		Target:   awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("integrations/"), integration.Ref()}),
	})
}

// disconnectDrain maps the disconnect queue to the disconnect function:
// batches of queue.DisconnectBatchSize and no batching window (a
// closed connection is removed as soon as a poller receives it), at most
// disconnectMaxConcurrency invocations however many connections close at
// once. A connection whose removal failed is reported alone
// (batchItemFailures) and comes back after the visibility timeout. The
// mapping's grant is the function's only access to the queue.
func (g *gateway) disconnectDrain() {
	g.functions["disconnect"].fn.AddEventSource(awslambdaeventsources.NewSqsEventSource(g.disconnects, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(queue.DisconnectBatchSize),
		ReportBatchItemFailures: jsii.Bool(true),
		MaxConcurrency:          jsii.Number(float64(g.s.DisconnectMaxConcurrency)),
	}))
}

// broadcastSources wires the bus rule and the task queue to broadcast.
func (g *gateway) broadcastSources(pattern *awsevents.EventPattern) {
	fn := g.functions["broadcast"].fn
	maxAge := awscdk.Duration_Hours(jsii.Number(eventMaxAgeHours))
	rule := func(id, name, description string, pattern *awsevents.EventPattern) {
		awsevents.NewRule(g.stack, jsii.String(id), &awsevents.RuleProps{
			EventBus:     g.bus,
			RuleName:     jsii.String(g.prefix + "-" + name),
			Description:  jsii.String(description),
			EventPattern: pattern,
			Targets: &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fn, &awseventstargets.LambdaFunctionProps{
				DeadLetterQueue: g.eventsDLQ,
				MaxEventAge:     maxAge,
				RetryAttempts:   jsii.Number(eventBridgeRetries),
			})},
		})
	}
	rule("BroadcastRule", "broadcast", "Every event with detail.topic, whatever its source and detail-type (publish.RulePattern)", pattern)
	rule("RevokeRule", "revoke", "Revocations: detail-type "+publish.RevokeDetailType+" (publish.RevokeRulePattern)",
		&awsevents.EventPattern{DetailType: jsii.Strings(publish.RevokeDetailType)})
	// EventBridge invokes Lambda asynchronously: these retries apply when
	// the function itself fails.
	fn.ConfigureAsyncInvoke(&awslambda.EventInvokeConfigOptions{
		RetryAttempts: jsii.Number(lambdaAsyncRetries),
		MaxEventAge:   maxAge,
		OnFailure:     awslambdadestinations.NewSqsDestination(g.eventsDLQ),
	})
	// One task per invocation: a fan-out shard is up to a thousand posts,
	// and shards run in parallel only as separate invocations. A failed
	// task is reported alone (batchItemFailures) and brought back within
	// seconds by the function (ChangeMessageVisibility, see functions.go).
	fn.AddEventSource(awslambdaeventsources.NewSqsEventSource(g.tasks, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(1),
		ReportBatchItemFailures: jsii.Bool(true),
		MaxConcurrency:          jsii.Number(float64(g.s.QueueMaxConcurrency)),
	}))
	g.lifecycleSource(fn)
}

// lifecycleSource maps the table's stream to broadcast, which puts
// wsgate.connection.opened/.closed on the bus and announces presence's
// join and leave. Only the records those need pass (Settings.StreamFilters:
// a connection opened or closed, a presence topic's subscription added or
// removed). Those cost at most one invocation each, fewer when batched:
// one per connection opened or closed, one per subscribe or unsubscribe on
// a presence topic (docs/operations.md's cost table counts them). Every other
// write, such as the update of its connection record that each client
// frame makes, is filtered out: Lambda reads the stream at no charge and
// invokes nothing for it. Up to 100 records or 1 s a batch, so a storm of
// connections costs few invocations and PutEvents calls, and $connect
// never waits on it. No mapping with lifecycleEvents=false and no
// presenceTopics.
func (g *gateway) lifecycleSource(fn awslambda.Function) {
	patterns := g.s.StreamFilters()
	if len(patterns) == 0 {
		return
	}
	filters := make([]*map[string]any, len(patterns))
	for i, p := range patterns {
		filters[i] = streamFilter(p)
	}
	fn.AddEventSource(awslambdaeventsources.NewDynamoEventSource(g.table, &awslambdaeventsources.DynamoEventSourceProps{
		// The settings the local stack's mapping runs too (store.Stream*):
		// a batch whose events did not reach the bus is split, retried,
		// then discarded with its metadata sent to the events DLQ.
		StartingPosition:      awslambda.StartingPosition_LATEST,
		BatchSize:             jsii.Number(store.StreamBatchSize),
		MaxBatchingWindow:     awscdk.Duration_Seconds(jsii.Number(store.StreamBatchWindow.Seconds())),
		RetryAttempts:         jsii.Number(store.StreamRetryAttempts),
		BisectBatchOnError:    jsii.Bool(store.StreamBisectOnError),
		ParallelizationFactor: jsii.Number(store.StreamParallelization),
		OnFailure:             awslambdaeventsources.NewSqsDlq(g.eventsDLQ),
		Filters:               &filters,
	}))
}

// streamFilter is one filter of an event source mapping whose pattern is
// exactly the string given (CDK's FilterCriteria.filter encodes a map in
// its keys' iteration order, which Go randomizes: the template would
// change at every synth).
func streamFilter(pattern string) *map[string]any {
	return &map[string]any{"pattern": jsii.String(pattern)}
}

// customDomain maps domainName to the stage (regional endpoint, TLS 1.2).
// The DNS record (CNAME or alias to the CustomDomainTarget output) is
// left to the user: the zone may live anywhere.
func (g *gateway) customDomain() {
	if g.s.DomainName == "" {
		return
	}
	domain := awsapigatewayv2.NewDomainName(g.stack, jsii.String("Domain"), &awsapigatewayv2.DomainNameProps{
		DomainName:     jsii.String(g.s.DomainName),
		Certificate:    awscertificatemanager.Certificate_FromCertificateArn(g.stack, jsii.String("Certificate"), jsii.String(g.s.CertificateArn)),
		SecurityPolicy: awsapigatewayv2.SecurityPolicy_TLS_1_2,
	})
	awsapigatewayv2.NewApiMapping(g.stack, jsii.String("DomainMapping"), &awsapigatewayv2.ApiMappingProps{
		Api: g.api, DomainName: domain, Stage: g.stage,
	})
	output(g.stack, "CustomDomainUrl", "wss://"+g.s.DomainName, "WebSocket URL on the custom domain")
	awscdk.NewCfnOutput(g.stack, jsii.String("CustomDomainTarget"), &awscdk.CfnOutputProps{
		Value:       domain.RegionalDomainName(),
		Description: jsii.String("Point " + g.s.DomainName + " here (CNAME, or a Route 53 alias with CustomDomainHostedZoneId)"),
	})
	awscdk.NewCfnOutput(g.stack, jsii.String("CustomDomainHostedZoneId"), &awscdk.CfnOutputProps{
		Value:       domain.RegionalHostedZoneId(),
		Description: jsii.String("Hosted zone of CustomDomainTarget, for a Route 53 alias record"),
	})
}

func (g *gateway) outputs() {
	out := func(id string, v *string, desc string) {
		awscdk.NewCfnOutput(g.stack, jsii.String(id), &awscdk.CfnOutputProps{Value: v, Description: jsii.String(desc)})
	}
	out("WebSocketUrl", g.stage.Url(), "Clients connect here (wss://)")
	out("ManagementEndpoint", g.stage.CallbackUrl(), "The @connections API ("+config.EnvManagementEndpoint+")")
	out("EventBusName", g.bus.EventBusName(), "Publish events here (PutEvents with detail.topic)")
	out("EventBusArn", g.bus.EventBusArn(), "For publishers' IAM policies (events:PutEvents)")
	out("TableName", g.table.TableName(), "The DynamoDB table ("+config.EnvTable+")")
	out("TaskQueueUrl", g.tasks.QueueUrl(), "The task queue ("+config.EnvQueueURL+")")
	if g.secret != nil {
		out("JwtSecretArn", g.secret.SecretArn(), "The "+g.s.JWTAlg+" signing key: backends read it to mint tokens")
	}
}

func output(stack awscdk.Stack, id, value, desc string) {
	awscdk.NewCfnOutput(stack, jsii.String(id), &awscdk.CfnOutputProps{Value: jsii.String(value), Description: jsii.String(desc)})
}
