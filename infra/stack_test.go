package main

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// What each function must be: runtime settings, environment names and the
// exact IAM actions its role holds. Written out here, not derived from
// functionSpecs, so a change to either shows up as a failure.
var want = map[string]struct {
	memory, timeout float64
	env             []string
	actions         []string
}{
	"connect": {
		memory: 512, timeout: 10,
		env: []string{config.EnvTable, config.EnvStage, config.EnvManagementEndpoint, config.EnvJWTAlg, config.EnvJWTSecretARN, config.EnvQueueURL},
		actions: []string{
			"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
			"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:BatchWriteItem",
			"sqs:SendMessage", "secretsmanager:GetSecretValue",
		},
	},
	"disconnect": {
		memory: 256, timeout: 10,
		env: []string{config.EnvTable, config.EnvStage, config.EnvManagementEndpoint, config.EnvJWTAlg, config.EnvJWTSecretARN},
		actions: []string{
			"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
			"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:BatchWriteItem",
			// the disconnect queue's event source mapping
			"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
		},
	},
	"message": {
		memory: 512, timeout: 29,
		env: []string{config.EnvTable, config.EnvStage, config.EnvManagementEndpoint, config.EnvJWTAlg, config.EnvJWTSecretARN, config.EnvQueueURL, config.EnvEventBus},
		actions: []string{
			"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
			"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
			"dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:BatchWriteItem",
			"execute-api:ManageConnections", "sqs:SendMessage", "secretsmanager:GetSecretValue",
			"events:PutEvents", // copies of client events
		},
	},
	"broadcast": {
		memory: 1024, timeout: 60,
		env: []string{config.EnvTable, config.EnvStage, config.EnvManagementEndpoint, config.EnvJWTAlg, config.EnvJWTSecretARN, config.EnvQueueURL, config.EnvEventBus},
		actions: []string{
			"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
			"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem",
			"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:BatchWriteItem",
			"execute-api:ManageConnections",
			// the task queue: send, and the event source mapping's receive
			"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
			"sqs:GetQueueAttributes", "sqs:GetQueueUrl",
			// the table's stream (lifecycle events) and the bus they go to
			"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
			"events:PutEvents",
		},
	},
}

// $connect and $default invoke their functions (AWS_PROXY); $disconnect
// invokes none: it sends the connection's id to the disconnect queue
// (TestStack_DisconnectRouteSendsConnectionIDToQueue).
func TestStack_RoutesProxyToFunctionsExceptDisconnect(t *testing.T) {
	s := synth(t, defaults)
	routes := map[string]string{"$connect": "connect", "$disconnect": "", "$default": "message"}
	found := map[string]bool{}
	for _, r := range s.resources("AWS::ApiGatewayV2::Route") {
		key := props(r)["RouteKey"].(string)
		fn, ok := routes[key]
		require.True(t, ok, "unexpected route %s", key)
		found[key] = true
		_, integ := s.routeIntegration(t, key)
		if key == "$disconnect" {
			assert.Equal(t, "AWS", integ["IntegrationType"], "$disconnect is an SQS service integration")
			assert.Contains(t, toJSON(t, integ["IntegrationUri"]), ":sqs:path/")
			for _, spec := range functionSpecs {
				fnID, _ := s.function(t, spec.name)
				assert.NotContains(t, toJSON(t, integ), `"`+fnID+`"`, "$disconnect invokes no function")
			}
			continue
		}
		assert.Equal(t, "AWS_PROXY", integ["IntegrationType"], key)
		fnID, _ := s.function(t, fn)
		assert.Contains(t, toJSON(t, integ["IntegrationUri"]), `"`+fnID+`"`, "route %s invokes %s", key, fn)
	}
	assert.Len(t, found, 3)
	assert.Len(t, s.resources("AWS::ApiGatewayV2::Integration"), 3, "one integration per route")
}

// $disconnect is an AWS service integration: SQS SendMessage (query
// protocol) of exactly queue.DisconnectTemplate, the one the local
// gateway renders, to the disconnect queue, as a role that may do that
// and nothing else.
func TestStack_DisconnectRouteSendsConnectionIDToQueue(t *testing.T) {
	for _, ctx := range []map[string]string{defaults, configured} {
		s := synth(t, ctx)
		queueID, _ := s.queueNamed(t, "disconnects")
		routeID, integ := s.routeIntegration(t, "$disconnect")
		// The logical id api.AddRoute gave the route when it invoked the
		// function: CloudFormation updates the deployed route in place (a
		// second route for $disconnect would be refused).
		assert.Equal(t, "WebSocketApidisconnectRouteC181A19C", routeID)

		assert.Equal(t, "AWS", integ["IntegrationType"], "a service integration, not AWS_PROXY")
		assert.Equal(t, "POST", integ["IntegrationMethod"])
		assert.Equal(t, map[string]any{"Fn::Join": []any{"", []any{
			"arn:", ref("AWS::Partition"), ":apigateway:", ref("AWS::Region"), ":sqs:path/", ref("AWS::AccountId"), "/", getAtt(queueID, "QueueName"),
		}}}, integ["IntegrationUri"], "arn:<partition>:apigateway:<region>:sqs:path/<account>/<queue name>")
		assert.Equal(t, map[string]any{"$default": queue.DisconnectTemplate}, integ["RequestTemplates"])
		assert.Equal(t, map[string]any{"$default": "Action=SendMessage&MessageBody=$util.urlEncode($context.connectionId)"}, integ["RequestTemplates"],
			"the connection's id, URL-encoded (ids end in '='), as the message body")
		assert.Equal(t, `\$default`, integ["TemplateSelectionExpression"], "always the $default template")
		assert.Equal(t, map[string]any{"integration.request.header.Content-Type": "'application/x-www-form-urlencoded'"}, integ["RequestParameters"])
		assert.Equal(t, "NEVER", integ["PassthroughBehavior"], "nothing reaches SQS untemplated")
		timeout, _ := integ["TimeoutInMillis"].(float64)
		assert.True(t, timeout >= 50 && timeout <= 29_000, "API Gateway's range for WebSocket integrations: %v", integ["TimeoutInMillis"])

		// The credentials: a role API Gateway assumes, allowed only
		// sqs:SendMessage on the disconnect queue.
		cred, ok := integ["CredentialsArn"].(map[string]any)
		require.True(t, ok, "the integration has a credentials role: %v", integ["CredentialsArn"])
		roleID := cred["Fn::GetAtt"].([]any)[0].(string)
		role := s.tmpl["Resources"].(map[string]any)[roleID].(map[string]any)
		require.Equal(t, "AWS::IAM::Role", role["Type"])
		assert.Equal(t, getAtt(roleID, "Arn"), cred)
		trust := statements(props(role)["AssumeRolePolicyDocument"])
		assert.Equal(t, []statement{{Effect: "Allow", Actions: []string{"sts:AssumeRole"}, Principal: map[string]any{"Service": "apigateway.amazonaws.com"}}}, trust)
		assert.Nil(t, props(role)["ManagedPolicyArns"])
		all := s.identityStatements()
		assert.Equal(t, []statement{{Effect: "Allow", Actions: []string{"sqs:SendMessage"}, Resources: []any{getAtt(queueID, "Arn")}}}, all[roleID])
		// Nothing else may send to the queue.
		for owner, sts := range all {
			for _, st := range sts {
				onQueue := slices.ContainsFunc(st.Resources, func(r any) bool { return reflect.DeepEqual(r, getAtt(queueID, "Arn")) })
				if onQueue && slices.Contains(st.Actions, "sqs:SendMessage") {
					assert.Equal(t, roleID, owner, "%s may send to the disconnect queue", owner)
				}
			}
		}
	}
}

// The disconnect function drains the disconnect queue: batches of
// queue.DisconnectBatchSize, failures reported per connection, at most
// disconnectMaxConcurrency at once, no batching window; the route no
// longer invokes it, and its DLQ's depth raises an alarm.
func TestStack_DisconnectQueueFeedsDisconnectFunction(t *testing.T) {
	for _, tc := range []struct {
		ctx         map[string]string
		concurrency float64
	}{
		{defaults, queue.DefaultDisconnectMaxConcurrency},
		{configured, 25},
	} {
		s := synth(t, tc.ctx)
		queueID, q := s.queueNamed(t, "disconnects")
		dlqID, dlq := s.queueNamed(t, "disconnects-dlq")
		assert.Equal(t, true, props(q)["SqsManagedSseEnabled"])
		assert.Equal(t, true, props(dlq)["SqsManagedSseEnabled"])
		assert.Equal(t, map[string]any{"deadLetterTargetArn": getAtt(dlqID, "Arn"), "maxReceiveCount": float64(queue.MaxReceives)}, props(q)["RedrivePolicy"])
		assert.Equal(t, 6*want["disconnect"].timeout, props(q)["VisibilityTimeout"], "six times the function's timeout (AWS's advice for Lambda event sources)")
		assert.Equal(t, float64(4*24*3600), props(q)["MessageRetentionPeriod"])
		assert.Equal(t, float64(14*24*3600), props(dlq)["MessageRetentionPeriod"], "longer than the queue's: a message keeps its first enqueue time")

		p := props(s.mappingFrom(t, getAtt(queueID, "Arn")))
		disconnectID, _ := s.function(t, "disconnect")
		assert.Equal(t, ref(disconnectID), p["FunctionName"])
		assert.Equal(t, float64(queue.DisconnectBatchSize), p["BatchSize"])
		assert.Equal(t, float64(10), p["BatchSize"])
		assert.Equal(t, []any{"ReportBatchItemFailures"}, p["FunctionResponseTypes"], "a connection that failed is retried alone")
		assert.Equal(t, map[string]any{"MaximumConcurrency": tc.concurrency}, p["ScalingConfig"], s.stage)
		assert.Nil(t, p["MaximumBatchingWindowInSeconds"], "no batching window")

		// Nothing invokes the disconnect function but its mapping; the
		// other routes' functions keep API Gateway's permission.
		invokedByAPI := map[string]bool{}
		for id, perm := range s.resources("AWS::Lambda::Permission") {
			fn := toJSON(t, props(perm)["FunctionName"])
			assert.NotContains(t, fn, `"`+disconnectID+`"`, "%s lets something invoke the disconnect function", id)
			if props(perm)["Principal"] == "apigateway.amazonaws.com" {
				for _, name := range []string{"connect", "message"} {
					if fnID, _ := s.function(t, name); strings.Contains(fn, `"`+fnID+`"`) {
						invokedByAPI[name] = true
					}
				}
			}
		}
		assert.Equal(t, map[string]bool{"connect": true, "message": true}, invokedByAPI)

		var alarm map[string]any
		for _, a := range s.resources("AWS::CloudWatch::Alarm") {
			if props(a)["AlarmName"] == "wsgate-"+s.stage+"-disconnects-dlq" {
				alarm = props(a)
			}
		}
		require.NotNil(t, alarm, "the disconnect DLQ's alarm")
		assert.Equal(t, "AWS/SQS", alarm["Namespace"])
		assert.Equal(t, "ApproximateNumberOfMessagesVisible", alarm["MetricName"])
		assert.Equal(t, []any{map[string]any{"Name": "QueueName", "Value": getAtt(dlqID, "QueueName")}}, alarm["Dimensions"])
		assert.Equal(t, "GreaterThanOrEqualToThreshold", alarm["ComparisonOperator"])
		assert.Equal(t, float64(1), alarm["Threshold"], "depth > 0")
	}
}

func TestStack_DefaultRouteReturnsResponses(t *testing.T) {
	s := synth(t, defaults)
	var defaultRoute string
	for id, r := range s.resources("AWS::ApiGatewayV2::Route") {
		if props(r)["RouteKey"] == "$default" {
			defaultRoute = id
			assert.Equal(t, "$default", props(r)["RouteResponseSelectionExpression"])
		} else {
			assert.Nil(t, props(r)["RouteResponseSelectionExpression"], "only $default answers")
		}
	}
	_, rr := s.one(t, "AWS::ApiGatewayV2::RouteResponse")
	assert.Equal(t, "$default", props(rr)["RouteResponseKey"])
	assert.Equal(t, ref(defaultRoute), props(rr)["RouteId"])
}

func TestStack_StageThrottlesAndAutoDeploys(t *testing.T) {
	for _, tc := range []struct {
		ctx         map[string]string
		stage       string
		rate, burst float64
		accountRole bool
	}{
		{defaults, "dev", DefaultThrottleRate, DefaultThrottleBurst, true},
		{configured, "staging", 50, 20, false},
	} {
		s := synth(t, tc.ctx)
		_, st := s.one(t, "AWS::ApiGatewayV2::Stage")
		p := props(st)
		assert.Equal(t, tc.stage, p["StageName"])
		assert.Equal(t, true, p["AutoDeploy"])
		routeSettings := p["DefaultRouteSettings"].(map[string]any)
		assert.Equal(t, tc.rate, routeSettings["ThrottlingRateLimit"])
		assert.Equal(t, tc.burst, routeSettings["ThrottlingBurstLimit"])
		assert.NotEqual(t, true, routeSettings["DataTraceEnabled"], "data trace logs message bodies")
		// Account-wide CloudWatch role, kept on delete, set before the stage.
		accounts := s.resources("AWS::ApiGateway::Account")
		if tc.accountRole {
			require.Len(t, accounts, 1)
			for id, a := range accounts {
				roleID := props(a)["CloudWatchRoleArn"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
				role := s.tmpl["Resources"].(map[string]any)[roleID].(map[string]any)
				assert.Equal(t, "Retain", role["DeletionPolicy"], "other APIs in the account log through this role")
				assert.Contains(t, toJSON(t, props(role)["AssumeRolePolicyDocument"]), "apigateway.amazonaws.com")
				assert.Contains(t, st["DependsOn"], id)
			}
		} else {
			assert.Empty(t, accounts, "apiGatewayCloudWatchRole=false leaves the account setting alone")
		}
	}
}

func TestStack_AccessLogFormatRecordsNoSecrets(t *testing.T) {
	s := synth(t, defaults)
	_, st := s.one(t, "AWS::ApiGatewayV2::Stage")
	logs := props(st)["AccessLogSettings"].(map[string]any)
	format := logs["Format"].(string)

	var fields map[string]string
	require.NoError(t, json.Unmarshal([]byte(format), &fields), "one JSON object per line")
	for _, v := range []string{"requestId", "extendedRequestId", "identity.sourceIp", "requestTime", "routeKey",
		"eventType", "status", "connectionId", "messageId", "integrationLatency", "integration.error", "error.message"} {
		assert.Contains(t, format, "$context."+v)
	}
	lower := strings.ToLower(format)
	for _, banned := range []string{"$request", "querystring", "header", "cookie", "token", "authorizer", "body", "useragent", "$input"} {
		assert.NotContains(t, lower, banned, "access logs must not record what may carry a token")
	}
	for _, v := range fields {
		assert.Regexp(t, `^\$context\.[A-Za-z.]+$`, v)
	}
	// The destination is this stack's log group, without the ":*" suffix.
	dest := toJSON(t, logs["DestinationArn"])
	assert.Contains(t, dest, ":log-group:")
	assert.NotContains(t, dest, ":*")
	var groupID string
	for id := range s.resources("AWS::Logs::LogGroup") {
		if strings.Contains(dest, `"`+id+`"`) {
			groupID = id
		}
	}
	require.NotEmpty(t, groupID, "access logs go to a log group of the stack")
	assert.Equal(t, float64(DefaultLogRetentionDays), props(s.resources("AWS::Logs::LogGroup")[groupID])["RetentionInDays"])
}

func TestStack_FunctionsRunArm64BootstrapWithTracing(t *testing.T) {
	s := synth(t, defaults)
	require.Len(t, s.resources("AWS::Lambda::Function"), 4)
	groups := s.resources("AWS::Logs::LogGroup")
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			_, p := s.function(t, name)
			assert.Equal(t, "provided.al2023", p["Runtime"])
			assert.Equal(t, []any{"arm64"}, p["Architectures"])
			assert.Equal(t, "bootstrap", p["Handler"])
			assert.Equal(t, w.memory, p["MemorySize"])
			assert.Equal(t, w.timeout, p["Timeout"])
			assert.Equal(t, map[string]any{"Mode": "Active"}, p["TracingConfig"])
			assert.Nil(t, p["ReservedConcurrentExecutions"], "no reservation by default (TestStack_MessageReservedConcurrencyFollowsContext)")
			lc := p["LoggingConfig"].(map[string]any)
			assert.Equal(t, "JSON", lc["LogFormat"])
			assert.Equal(t, "INFO", lc["ApplicationLogLevel"], "EMF lines have no level (INFO); a higher level drops metrics")
			group := lc["LogGroup"].(map[string]any)["Ref"].(string)
			require.Contains(t, groups, group, "a log group of its own")
			assert.Equal(t, float64(DefaultLogRetentionDays), props(groups[group])["RetentionInDays"])
			assert.Contains(t, toJSON(t, p["Code"]), ".zip", "the zip make build writes")
		})
	}
	// The broadcast timeout and the task queue's visibility agree.
	_, q := s.taskQueue(t)
	assert.Equal(t, 6*want["broadcast"].timeout, props(q)["VisibilityTimeout"])
}

func TestStack_MessageReservedConcurrencyFollowsContext(t *testing.T) {
	for _, tc := range []struct {
		ctx  map[string]string
		want any
	}{
		// None by default: Lambda refuses a reservation that leaves an
		// account fewer than 100 unreserved executions, and new accounts
		// have a quota of 10 or 50, so any default reservation fails there.
		{defaults, nil},
		{configured, 40.0},
		{map[string]string{"stage": "unreserved", "messageReservedConcurrency": "0"}, nil},
	} {
		s := synth(t, tc.ctx)
		_, p := s.function(t, "message")
		assert.Equal(t, tc.want, p["ReservedConcurrentExecutions"], "%v", tc.ctx)
		for _, other := range []string{"connect", "disconnect", "broadcast"} {
			_, p := s.function(t, other)
			assert.Nil(t, p["ReservedConcurrentExecutions"], other)
		}
	}
}

func TestStack_LogRetentionFollowsContext(t *testing.T) {
	for ctx, days := range map[*map[string]string]float64{&defaults: 30, &configured: 90} {
		s := synth(t, *ctx)
		groups := s.resources("AWS::Logs::LogGroup")
		assert.Len(t, groups, 5, "one per function and the access logs")
		for id, g := range groups {
			assert.Equal(t, days, props(g)["RetentionInDays"], id)
		}
	}
}

func TestStack_FunctionEnvironmentUsesConfigNames(t *testing.T) {
	s := synth(t, defaults)
	apiID, _ := s.one(t, "AWS::ApiGatewayV2::Api")
	tableID, _ := s.one(t, "AWS::DynamoDB::Table")
	secretID, _ := s.one(t, "AWS::SecretsManager::Secret")
	taskQueueID, _ := s.taskQueue(t)
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			env := s.env(t, name)
			names := keys(env)
			assert.ElementsMatch(t, w.env, names, "only the names the function needs; unset settings keep shared/config's defaults")
			assert.Equal(t, ref(tableID), env[config.EnvTable])
			assert.Equal(t, "dev", env[config.EnvStage])
			assert.Equal(t, config.DefaultJWTAlg, env[config.EnvJWTAlg])
			assert.Equal(t, ref(secretID), env[config.EnvJWTSecretARN])
			if _, ok := env[config.EnvQueueURL]; ok {
				assert.Equal(t, ref(taskQueueID), env[config.EnvQueueURL])
			}
			// https://{apiId}.execute-api.{region}.{urlSuffix}/{stage}
			assert.Equal(t, map[string]any{"Fn::Join": []any{"", []any{
				"https://", ref(apiID), ".execute-api.", ref("AWS::Region"), ".", ref("AWS::URLSuffix"), "/dev",
			}}}, env[config.EnvManagementEndpoint])
		})
	}
}

func TestStack_ContextSettingsReachEveryFunction(t *testing.T) {
	s := synth(t, configured)
	expect := map[string]string{
		config.EnvJWTIssuer:                  "https://auth.example.com/",
		config.EnvJWTAudience:                "wsgate",
		config.EnvTokenCookie:                "session",
		config.EnvAllowedOrigins:             "https://app.example.com,https://*.example.com",
		config.EnvAnonymousTopics:            "topology.*,public.>",
		config.EnvStateRequiredTopics:        "firmware.operation.*",
		config.EnvAuthMessage:                "false",
		config.EnvAuthDeadline:               "20s",
		config.EnvMaxMessageBytes:            "1024",
		config.EnvMessagesPerSecond:          "50",
		config.EnvMaxConnectionsPerPrincipal: "10",
		config.EnvMaxSubscriptions:           "20",
		config.EnvMaxBatch:                   "25",
		config.EnvFrameStoreCalls:            "150",
		config.EnvMaxReplayBytes:             "524288",
		config.EnvMaxReplayBytesPerMinute:    "4194304",
		config.EnvProfiles:                   `{"valtronics":{"max_message_bytes":1024}}`,
		config.EnvHistoryRetention:           "48h",
		config.EnvHistoryDefault:             "true",
		config.EnvTicketLifetime:             "30s",
		config.EnvConnectionTTL:              "3h",
		config.EnvFanoutWorkers:              "128",
		config.EnvFanoutPageSize:             "500",
		config.EnvPostRate:                   "1000",
		config.EnvLogLevel:                   "debug",
		config.EnvJWTSecretARN:               configured["jwtSecretArn"],
		config.EnvStage:                      "staging",
	}
	for name := range want {
		env := s.env(t, name)
		for k, v := range expect {
			assert.Equal(t, v, env[k], "%s %s", name, k)
		}
		_, p := s.function(t, name)
		assert.Equal(t, "DEBUG", p["LoggingConfig"].(map[string]any)["ApplicationLogLevel"], "logLevel=debug lets debug lines through")
	}
}

// TestStack_FunctionEnvironmentPassesConfigValidation runs the functions'
// own configuration loader on each environment the stack writes (tokens
// replaced by placeholders): a function that would refuse to start fails
// here, at synth time, not after a deploy.
func TestStack_FunctionEnvironmentPassesConfigValidation(t *testing.T) {
	for _, ctx := range allContexts {
		s := synth(t, ctx)
		for name := range want {
			env := s.env(t, name)
			_, err := config.Load(func(k string) string {
				switch v := env[k].(type) {
				case nil:
					return ""
				case string:
					return v
				default:
					return "resolved-at-deploy" // a Ref or Fn::Join
				}
			})
			assert.NoError(t, err, "%s in stage %s", name, s.stage)
		}
	}
}

func TestStack_TableMatchesStoreSchema(t *testing.T) {
	s := synth(t, defaults)
	_, table := s.one(t, "AWS::DynamoDB::Table")
	p := props(table)
	in := store.CreateTableInput("x")
	var keySchema, attrs []any
	for _, k := range in.KeySchema {
		keySchema = append(keySchema, map[string]any{"AttributeName": *k.AttributeName, "KeyType": string(k.KeyType)})
	}
	for _, a := range in.AttributeDefinitions {
		attrs = append(attrs, map[string]any{"AttributeName": *a.AttributeName, "AttributeType": string(a.AttributeType)})
	}
	assert.Equal(t, keySchema, p["KeySchema"])
	assert.ElementsMatch(t, attrs, p["AttributeDefinitions"])
	assert.Equal(t, []any{
		map[string]any{"AttributeName": store.PartitionKey, "KeyType": "HASH"},
		map[string]any{"AttributeName": store.SortKey, "KeyType": "RANGE"},
	}, p["KeySchema"])
	assert.Equal(t, "PAY_PER_REQUEST", p["BillingMode"])
	assert.Equal(t, map[string]any{"AttributeName": store.TTLAttribute, "Enabled": true}, p["TimeToLiveSpecification"])
	assert.Equal(t, map[string]any{"PointInTimeRecoveryEnabled": true}, p["PointInTimeRecoverySpecification"])
	assert.Equal(t, map[string]any{"SSEEnabled": true}, p["SSESpecification"], "KMS with the AWS managed key")
	assert.Nil(t, p["GlobalSecondaryIndexes"])
	assert.Equal(t, false, p["DeletionProtectionEnabled"])
	assert.Equal(t, "Delete", table["DeletionPolicy"], "a dev stage is disposable")
}

func TestStack_ProdKeepsStatefulResources(t *testing.T) {
	s := synth(t, prod)
	_, table := s.one(t, "AWS::DynamoDB::Table")
	assert.Equal(t, true, props(table)["DeletionProtectionEnabled"])
	assert.Equal(t, "Retain", table["DeletionPolicy"])
	assert.Equal(t, "Retain", table["UpdateReplacePolicy"])
	_, secret := s.one(t, "AWS::SecretsManager::Secret")
	assert.Equal(t, "Retain", secret["DeletionPolicy"], "tokens minted with it must keep working")
	for id, g := range s.resources("AWS::Logs::LogGroup") {
		assert.Equal(t, "Retain", g["DeletionPolicy"], id)
	}

	// prod=true makes any stage a prod stage.
	st, err := settingsFrom(mapGetter(map[string]any{"stage": "live", "prod": "true"}))
	require.NoError(t, err)
	assert.True(t, st.Prod)
}

func TestStack_BusNamedForStage(t *testing.T) {
	for _, ctx := range []map[string]string{defaults, configured} {
		s := synth(t, ctx)
		_, bus := s.one(t, "AWS::Events::EventBus")
		assert.Equal(t, publish.BusName(s.stage), props(bus)["Name"])
	}
}

// The stack's two rules are the local stack's: events with a topic, and
// revocations, both to broadcast with the same retries and dead letters.
func TestStack_RulesMatchPublisherContract(t *testing.T) {
	s := synth(t, defaults)
	busID, _ := s.one(t, "AWS::Events::EventBus")
	rules := s.resources("AWS::Events::Rule")
	require.Len(t, rules, 2)
	want := map[string]string{"wsgate-dev-broadcast": publish.RulePattern, "wsgate-dev-revoke": publish.RevokeRulePattern}
	for _, rule := range rules {
		p := props(rule)
		name, _ := p["Name"].(string)
		require.Contains(t, want, name)
		var pattern any
		require.NoError(t, json.Unmarshal([]byte(want[name]), &pattern))
		assert.Equal(t, pattern, p["EventPattern"], "exactly the events package's pattern")
		assert.Equal(t, ref(busID), p["EventBusName"])

		targets := p["Targets"].([]any)
		require.Len(t, targets, 1)
		target := targets[0].(map[string]any)
		broadcastID, _ := s.function(t, "broadcast")
		assert.Equal(t, getAtt(broadcastID, "Arn"), target["Arn"])
		assert.Equal(t, map[string]any{"MaximumEventAgeInSeconds": float64(3600), "MaximumRetryAttempts": float64(eventBridgeRetries)}, target["RetryPolicy"])
		eventsDLQ, _ := s.queueNamed(t, "events-dlq")
		assert.Equal(t, map[string]any{"Arn": getAtt(eventsDLQ, "Arn")}, target["DeadLetterConfig"])
	}
}

func TestStack_EventDeadLetterQueueAcceptsOnlyTheRule(t *testing.T) {
	s := synth(t, defaults)
	eventsDLQ, q := s.queueNamed(t, "events-dlq")
	assert.Equal(t, true, props(q)["SqsManagedSseEnabled"])
	allowed := map[string]bool{}
	for _, pol := range s.resources("AWS::SQS::QueuePolicy") {
		if !slices.ContainsFunc(props(pol)["Queues"].([]any), func(q any) bool { return toJSON(t, q) == toJSON(t, ref(eventsDLQ)) }) {
			continue
		}
		for _, st := range statements(props(pol)["PolicyDocument"]) {
			if st.Effect == "Allow" {
				assert.Equal(t, map[string]any{"Service": "events.amazonaws.com"}, st.Principal)
				assert.Equal(t, []string{"sqs:SendMessage"}, st.Actions)
				allowed[toJSON(t, st.Condition)] = true
			}
		}
	}
	for ruleID := range s.resources("AWS::Events::Rule") {
		cond := map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": getAtt(ruleID, "Arn")}}
		assert.True(t, allowed[toJSON(t, cond)], "EventBridge may send rule %s's failures to the DLQ", ruleID)
	}
	assert.Len(t, allowed, 2, "only the two rules may")
}

func TestStack_BroadcastAsyncInvokeRetriesThenDeadLetters(t *testing.T) {
	s := synth(t, defaults)
	_, cfg := s.one(t, "AWS::Lambda::EventInvokeConfig")
	p := props(cfg)
	broadcastID, _ := s.function(t, "broadcast")
	eventsDLQ, _ := s.queueNamed(t, "events-dlq")
	assert.Equal(t, ref(broadcastID), p["FunctionName"])
	assert.Equal(t, float64(2), p["MaximumRetryAttempts"])
	assert.Equal(t, float64(3600), p["MaximumEventAgeInSeconds"])
	assert.Equal(t, map[string]any{"OnFailure": map[string]any{"Destination": getAtt(eventsDLQ, "Arn")}}, p["DestinationConfig"])
}

func TestStack_TaskQueueFeedsBroadcast(t *testing.T) {
	for ctx, concurrency := range map[*map[string]string]float64{&defaults: DefaultQueueMaxConcurrency, &configured: 20} {
		s := synth(t, *ctx)
		taskID, q := s.taskQueue(t)
		dlqID, dlq := s.queueNamed(t, "tasks-dlq")
		assert.Equal(t, true, props(q)["SqsManagedSseEnabled"])
		assert.Equal(t, true, props(dlq)["SqsManagedSseEnabled"])
		assert.Equal(t, map[string]any{"deadLetterTargetArn": getAtt(dlqID, "Arn"), "maxReceiveCount": float64(queue.MaxReceives)}, props(q)["RedrivePolicy"],
			"the receives queue.RetryDelay's schedule spreads over minutes")
		assert.Equal(t, float64(14*24*3600), props(dlq)["MessageRetentionPeriod"])
		// Set, not left to SQS's default: the largest task the functions
		// send, and its dead-letter queue holds whatever the queue does.
		assert.Equal(t, float64(queue.MaxMessageBytes), props(q)["MaximumMessageSize"])
		assert.Equal(t, float64(queue.MaxMessageBytes), props(dlq)["MaximumMessageSize"])

		esm := s.mappingFrom(t, getAtt(taskID, "Arn"))
		p := props(esm)
		broadcastID, _ := s.function(t, "broadcast")
		assert.Equal(t, ref(broadcastID), p["FunctionName"])
		assert.Equal(t, float64(1), p["BatchSize"], "one shard per invocation, so shards run in parallel")
		assert.Equal(t, []any{"ReportBatchItemFailures"}, p["FunctionResponseTypes"], "a failed task is retried alone")
		assert.Equal(t, map[string]any{"MaximumConcurrency": concurrency}, p["ScalingConfig"])

		// The function brings a failed task back itself: it may change a
		// message's visibility, on the task queue only.
		var on [][]any
		for _, st := range s.identityStatements()[s.roleOf(t, "broadcast")] {
			if slices.Contains(st.Actions, "sqs:ChangeMessageVisibility") {
				on = append(on, st.Resources)
			}
		}
		assert.Equal(t, [][]any{{getAtt(taskID, "Arn")}}, on, "sqs:ChangeMessageVisibility on the task queue")
	}
}

// The table's stream feeds broadcast its lifecycle and presence batches:
// only the records those need (store.StreamUse.Filters, deployed as the
// very strings the local stack evaluates), up to 100 records or a second,
// retried then dead-lettered.
func TestStack_TableStreamFeedsLifecycleEvents(t *testing.T) {
	s := synth(t, defaults)
	tableID, table := s.one(t, "AWS::DynamoDB::Table")
	assert.Equal(t, map[string]any{"StreamViewType": "NEW_AND_OLD_IMAGES"}, props(table)["StreamSpecification"])
	p := props(s.mappingFrom(t, getAtt(tableID, "StreamArn")))
	broadcastID, _ := s.function(t, "broadcast")
	assert.Equal(t, ref(broadcastID), p["FunctionName"])
	assert.Equal(t, float64(100), p["BatchSize"])
	assert.Equal(t, float64(1), p["MaximumBatchingWindowInSeconds"])
	assert.Equal(t, "LATEST", p["StartingPosition"])
	assert.Equal(t, float64(store.StreamRetryAttempts), p["MaximumRetryAttempts"])
	assert.Equal(t, true, p["BisectBatchOnFunctionError"])
	assert.Equal(t, float64(store.StreamParallelization), p["ParallelizationFactor"])
	assert.Equal(t, filterCriteria(store.StreamUse{Lifecycle: true}.Filters()), p["FilterCriteria"])
	dlqID, _ := s.queueNamed(t, "events-dlq")
	assert.Equal(t, map[string]any{"OnFailure": map[string]any{"Destination": getAtt(dlqID, "Arn")}}, p["DestinationConfig"])
}

// streamFilters are the table stream mapping's filter patterns, or nil
// when there is no mapping.
func (s *synthesized) streamFilters(t *testing.T) []string {
	t.Helper()
	tableID, _ := s.one(t, "AWS::DynamoDB::Table")
	for _, m := range s.resources("AWS::Lambda::EventSourceMapping") {
		if reflect.DeepEqual(props(m)["EventSourceArn"], getAtt(tableID, "StreamArn")) {
			var out []string
			for _, f := range props(m)["FilterCriteria"].(map[string]any)["Filters"].([]any) {
				out = append(out, f.(map[string]any)["Pattern"].(string))
			}
			return out
		}
	}
	return nil
}

func filterCriteria(patterns []string) map[string]any {
	var filters []any
	for _, p := range patterns {
		filters = append(filters, map[string]any{"Pattern": p})
	}
	return map[string]any{"Filters": filters}
}

// Presence is never silently off: every presence topic's prefix is in
// the mapping's filters, however many there are (one filter holds them
// all), and lifecycleEvents=false keeps the mapping for presence.
func TestStack_StreamMappingServesEveryPresenceTopic(t *testing.T) {
	lifecycle := store.StreamUse{Lifecycle: true}.Filters()
	topics := []string{"room.*", "chat.lobby", "a.>", "b.*", "c.*", "d.*"}
	presence := store.StreamUse{PresencePrefixes: []string{"room", "chat.lobby", "a", "b", "c", "d"}}.Filters()
	require.Len(t, presence, 1)

	got := synth(t, map[string]string{"presenceTopics": strings.Join(topics, ",")}).streamFilters(t)
	assert.Equal(t, append(slices.Clone(lifecycle), presence...), got)
	for _, prefix := range []string{"room", "chat.lobby", "a", "b", "c", "d"} {
		assert.Contains(t, got[len(got)-1], `{"prefix":"P#`+prefix+`"}`, "no prefix dropped")
	}

	onlyPresence := synth(t, map[string]string{"lifecycleEvents": "false", "presenceTopics": strings.Join(topics, ",")})
	assert.Equal(t, presence, onlyPresence.streamFilters(t), "presence without lifecycle events: the mapping stays, for presence only")

	off := synth(t, map[string]string{"lifecycleEvents": "false"})
	assert.Nil(t, off.streamFilters(t), "neither: no mapping")
	assert.Len(t, off.resources("AWS::Lambda::EventSourceMapping"), 2, "only the task queue's and the disconnect queue's")
}

// A publish hook named in context: the message function may invoke it,
// and only it.
func TestStack_PublishHookMayBeInvokedByTheMessageFunction(t *testing.T) {
	s := synth(t, map[string]string{"publishHook": "arn:aws:lambda:eu-west-1:123456789012:function:moderate", "publishHookTimeout": "3s"})
	found := 0
	for owner, sts := range s.identityStatements() {
		for _, st := range sts {
			if slices.Contains(st.Actions, "lambda:InvokeFunction") {
				found++
				assert.Contains(t, owner, "Message", "only the message function")
				assert.Equal(t, []any{"arn:aws:lambda:eu-west-1:123456789012:function:moderate"}, st.Resources)
			}
		}
	}
	assert.Equal(t, 1, found)
	env := s.env(t, "message")
	assert.Equal(t, "arn:aws:lambda:eu-west-1:123456789012:function:moderate", env[config.EnvPublishHook])
	assert.Equal(t, "3s", env[config.EnvPublishHookTimeout])
}

func TestStack_QueuesRefuseUnencryptedTransport(t *testing.T) {
	s := synth(t, defaults)
	queues := s.resources("AWS::SQS::Queue")
	require.Len(t, queues, 5)
	for id := range queues {
		var denies bool
		for _, pol := range s.resources("AWS::SQS::QueuePolicy") {
			if toJSON(t, props(pol)["Queues"]) != toJSON(t, []any{ref(id)}) {
				continue
			}
			for _, st := range statements(props(pol)["PolicyDocument"]) {
				if st.Effect == "Deny" && toJSON(t, st.Condition) == `{"Bool":{"aws:SecureTransport":"false"}}` {
					denies = true
				}
			}
		}
		assert.True(t, denies, "%s enforces TLS", id)
	}
}

func TestStack_GeneratedJwtSecretStaysOutOfEnvironment(t *testing.T) {
	s := synth(t, defaults)
	secretID, secret := s.one(t, "AWS::SecretsManager::Secret")
	gen := props(secret)["GenerateSecretString"].(map[string]any)
	assert.GreaterOrEqual(t, gen["PasswordLength"], float64(32))
	assert.Nil(t, gen["GenerateStringKey"], "a plain string: the functions use SecretString as the key")
	for name := range want {
		env := s.env(t, name)
		assert.NotContains(t, env, config.EnvJWTSecret, name)
		assert.Equal(t, ref(secretID), env[config.EnvJWTSecretARN], name)
		assert.NotContains(t, toJSON(t, env), "resolve:secretsmanager", name)
	}
	assert.NotContains(t, toJSON(t, s.tmpl), "{{resolve:secretsmanager", "the secret value never enters the template")
}

func TestStack_ExistingSecretIsReadNotCreated(t *testing.T) {
	s := synth(t, configured)
	assert.Empty(t, s.resources("AWS::SecretsManager::Secret"))
	for _, name := range []string{"connect", "message"} {
		sts := s.identityStatements()[s.roleOf(t, name)]
		assert.Contains(t, sts, statement{Effect: "Allow", Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []any{configured["jwtSecretArn"] + "-??????"}}, name)
		var decrypt bool
		for _, st := range sts {
			if slices.Contains(st.Actions, "kms:Decrypt") {
				decrypt = true
				assert.Equal(t, []any{configured["jwtSecretKeyArn"]}, st.Resources)
				assert.Contains(t, toJSON(t, st.Condition), "kms:ViaService")
			}
		}
		assert.True(t, decrypt, "%s may decrypt the secret's customer managed key through Secrets Manager", name)
	}

	// The ARN is given without the random suffix: -?????? matches it.
	p := synth(t, partialSecret)
	assert.Contains(t, p.identityStatements()[p.roleOf(t, "connect")],
		statement{Effect: "Allow", Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []any{partialSecret["jwtSecretArn"] + "-??????"}})
	assert.Equal(t, partialSecret["jwtSecretArn"], p.env(t, "connect")[config.EnvJWTSecretARN], "the functions read it by that ARN")
}

func TestStack_PublicKeyAlgorithmsNeedNoSecret(t *testing.T) {
	s := synth(t, es256)
	assert.Empty(t, s.resources("AWS::SecretsManager::Secret"))
	assert.NotContains(t, toJSON(t, s.identityStatements()), "secretsmanager:")
	for name := range want {
		env := s.env(t, name)
		assert.Equal(t, "ES256", env[config.EnvJWTAlg])
		assert.Equal(t, es256["jwtPublicKey"], env[config.EnvJWTPublicKey])
		assert.NotContains(t, env, config.EnvJWTSecretARN)
	}
	assert.NotContains(t, s.tmpl["Outputs"], "JwtSecretArn")
}

// RS256/ES256 tokens leave no HMAC secret to seal presence cursors with:
// with presence topics the stack generates a key for them, which every
// function is told of and only connect and message may read (the
// functions refuse to start without one).
func TestStack_PublicKeyAlgorithmsWithPresenceGetACursorKey(t *testing.T) {
	ctx := map[string]string{"presenceTopics": "room.*"}
	for k, v := range es256 {
		ctx[k] = v
	}
	s := synth(t, ctx)
	require.Len(t, s.resources("AWS::SecretsManager::Secret"), 1)
	for name := range want {
		assert.Contains(t, s.env(t, name), config.EnvCursorKeyARN, name)
	}
	reads := toJSON(t, s.identityStatements()[s.roleOf(t, "message")])
	assert.Contains(t, reads, "secretsmanager:GetSecretValue")
	assert.NotContains(t, toJSON(t, s.identityStatements()[s.roleOf(t, "broadcast")]), "secretsmanager:")
}

// TestStack_NoPolicyGrantsWildcardResourceExceptXRay walks every identity
// policy of every variant: Resource "*" is allowed only for X-Ray's two
// actions, which support no resource-level permissions.
func TestStack_NoPolicyGrantsWildcardResourceExceptXRay(t *testing.T) {
	xray := []string{"xray:PutTelemetryRecords", "xray:PutTraceSegments"}
	for _, ctx := range allContexts {
		s := synth(t, ctx)
		for owner, sts := range s.identityStatements() {
			for _, st := range sts {
				for _, a := range st.Actions {
					assert.NotContains(t, a, "*", "%s/%s: wildcard action %s", s.stage, owner, a)
				}
				for _, r := range st.Resources {
					if r == "*" {
						// dynamodb:ListStreams (the stream mapping's) has no
						// resource-level permission: IAM needs Resource *.
						sorted := slices.DeleteFunc(slices.Clone(st.Actions), func(a string) bool { return a == "dynamodb:ListStreams" })
						sort.Strings(sorted)
						if len(sorted) == 0 {
							continue
						}
						assert.Equal(t, xray, sorted, "%s/%s: Resource * for %v", s.stage, owner, st.Actions)
					}
				}
			}
		}
		// Resource policies allow no anonymous principal.
		for id, pol := range s.resources("AWS::SQS::QueuePolicy") {
			for _, st := range statements(props(pol)["PolicyDocument"]) {
				if st.Effect == "Allow" {
					assert.NotContains(t, toJSON(t, st.Principal), `"*"`, "%s/%s", s.stage, id)
				}
			}
		}
	}
}

func TestStack_ManageConnectionsScopedToStage(t *testing.T) {
	s := synth(t, defaults)
	apiID, _ := s.one(t, "AWS::ApiGatewayV2::Api")
	arn := func(method string) any {
		return map[string]any{"Fn::Join": []any{"", []any{
			"arn:", ref("AWS::Partition"), ":execute-api:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":",
			ref(apiID), "/dev/" + method + "/@connections/*",
		}}}
	}
	all := s.identityStatements()
	for name, methods := range map[string][]string{"connect": nil, "disconnect": nil, "message": {"POST", "DELETE"}, "broadcast": {"POST", "DELETE"}} {
		var got []any
		for _, st := range all[s.roleOf(t, name)] {
			if slices.Contains(st.Actions, "execute-api:ManageConnections") {
				assert.Equal(t, []string{"execute-api:ManageConnections"}, st.Actions, name)
				got = append(got, st.Resources...)
			}
		}
		var expect []any
		for _, m := range methods {
			expect = append(expect, arn(m))
		}
		assert.ElementsMatch(t, expect, got, "%s: only this stage's @connections, only the methods it calls", name)
	}
	// Nothing else in the stack may manage connections.
	for owner, sts := range all {
		for _, st := range sts {
			if slices.Contains(st.Actions, "execute-api:ManageConnections") {
				assert.Contains(t, []string{s.roleOf(t, "message"), s.roleOf(t, "broadcast")}, owner)
			}
		}
	}
}

func TestStack_DynamoDBActionsOnlyOnTheTable(t *testing.T) {
	for _, ctx := range allContexts {
		s := synth(t, ctx)
		tableID, _ := s.one(t, "AWS::DynamoDB::Table")
		for owner, sts := range s.identityStatements() {
			for _, st := range sts {
				dynamo := slices.ContainsFunc(st.Actions, func(a string) bool { return strings.HasPrefix(a, "dynamodb:") && a != "dynamodb:ListStreams" })
				if dynamo {
					switch {
					case slices.Contains(st.Actions, "dynamodb:GetRecords"):
						assert.Equal(t, []any{getAtt(tableID, "StreamArn")}, st.Resources, "%s/%s: the stream only", s.stage, owner)
						continue
					}
					assert.Equal(t, []any{getAtt(tableID, "Arn")}, st.Resources, "%s/%s", s.stage, owner)
					for _, a := range st.Actions {
						assert.True(t, strings.HasPrefix(a, "dynamodb:"), "%s mixed into a DynamoDB statement", a)
					}
				}
			}
		}
	}
}

func TestStack_EachFunctionHoldsExactlyItsPermissions(t *testing.T) {
	s := synth(t, defaults)
	all := s.identityStatements()
	taskQueue, _ := s.taskQueue(t)
	eventsDLQ, _ := s.queueNamed(t, "events-dlq")
	disconnectQueue, _ := s.queueNamed(t, "disconnects")
	secretID, _ := s.one(t, "AWS::SecretsManager::Secret")
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			role := s.roleOf(t, name)
			actions := map[string]bool{}
			for _, st := range all[role] {
				assert.Equal(t, "Allow", st.Effect)
				for _, a := range st.Actions {
					actions[a] = true
				}
				switch {
				case slices.Contains(st.Actions, "secretsmanager:GetSecretValue"):
					assert.Equal(t, []any{ref(secretID)}, st.Resources)
				case slices.ContainsFunc(st.Actions, func(a string) bool { return strings.HasPrefix(a, "sqs:") }):
					switch {
					case name == "disconnect":
						assert.Equal(t, []any{getAtt(disconnectQueue, "Arn")}, st.Resources, "the disconnect queue only")
					case name == "broadcast" && !slices.Contains(st.Actions, "sqs:ReceiveMessage"):
						// the asynchronous on-failure destination
						assert.Equal(t, []any{getAtt(eventsDLQ, "Arn")}, st.Resources)
					default:
						assert.Equal(t, []any{getAtt(taskQueue, "Arn")}, st.Resources)
					}
				case slices.Contains(st.Actions, "logs:PutLogEvents"):
					_, p := s.function(t, name)
					group := p["LoggingConfig"].(map[string]any)["LogGroup"].(map[string]any)["Ref"].(string)
					assert.Equal(t, []any{getAtt(group, "Arn")}, st.Resources, "its own log group only")
				}
			}
			assert.ElementsMatch(t, w.actions, keys(actions))
			role2 := s.tmpl["Resources"].(map[string]any)[role].(map[string]any)
			assert.Nil(t, props(role2)["ManagedPolicyArns"], "no managed policies (AWSLambdaBasicExecutionRole allows every log group)")
			assert.Contains(t, toJSON(t, props(role2)["AssumeRolePolicyDocument"]), "lambda.amazonaws.com")
		})
	}
}

func TestStack_AlarmsCoverFailureModes(t *testing.T) {
	s := synth(t, defaults)
	alarms := map[string]map[string]any{}
	for _, a := range s.resources("AWS::CloudWatch::Alarm") {
		p := props(a)
		alarms[p["AlarmName"].(string)] = p
		assert.Nil(t, p["AlarmActions"], "no topic without alarmEmail")
		assert.Equal(t, "notBreaching", p["TreatMissingData"])
	}
	for name := range want {
		fnID, _ := s.function(t, name)
		for _, metric := range []string{"Errors", "Throttles"} {
			a, ok := alarms["wsgate-dev-"+name+"-"+strings.ToLower(metric)]
			require.True(t, ok, "%s %s alarm", name, metric)
			assert.Equal(t, "AWS/Lambda", a["Namespace"])
			assert.Equal(t, metric, a["MetricName"])
			assert.Equal(t, []any{map[string]any{"Name": "FunctionName", "Value": ref(fnID)}}, a["Dimensions"])
			assert.Equal(t, float64(1), a["Threshold"])
		}
	}
	for alarm, queue := range map[string]string{"wsgate-dev-task-dlq": "tasks-dlq", "wsgate-dev-events-dlq": "events-dlq", "wsgate-dev-disconnects-dlq": "disconnects-dlq"} {
		a, ok := alarms[alarm]
		require.True(t, ok, alarm)
		qID, _ := s.queueNamed(t, queue)
		assert.Equal(t, "AWS/SQS", a["Namespace"])
		assert.Equal(t, "ApproximateNumberOfMessagesVisible", a["MetricName"])
		assert.Equal(t, []any{map[string]any{"Name": "QueueName", "Value": getAtt(qID, "QueueName")}}, a["Dimensions"])
		assert.Equal(t, "GreaterThanOrEqualToThreshold", a["ComparisonOperator"])
		assert.Equal(t, float64(1), a["Threshold"], "depth > 0")
	}
	failed, ok := alarms["wsgate-dev-failed-deliveries"]
	require.True(t, ok)
	assert.Equal(t, metrics.Namespace, failed["Namespace"])
	assert.Equal(t, "Failed", failed["MetricName"])
	assert.ElementsMatch(t, []any{
		map[string]any{"Name": "Stage", "Value": "dev"},
		map[string]any{"Name": "Function", "Value": "broadcast"},
	}, failed["Dimensions"])

	// The table stream's mapping: its lag and lifecycle events' failures.
	broadcastID, _ := s.function(t, "broadcast")
	age, ok := alarms["wsgate-dev-stream-iterator-age"]
	require.True(t, ok, "the stream mapping's iterator age")
	assert.Equal(t, "AWS/Lambda", age["Namespace"])
	assert.Equal(t, "IteratorAge", age["MetricName"])
	assert.Equal(t, "Maximum", age["Statistic"])
	assert.Equal(t, []any{map[string]any{"Name": "FunctionName", "Value": ref(broadcastID)}}, age["Dimensions"])
	assert.Equal(t, float64(60_000), age["Threshold"], "a minute behind, in milliseconds")
	assertEMFAlarm(t, alarms, "wsgate-dev-lifecycle-events-failed", "LifecycleEventsFailed", "dev")
	assert.NotContains(t, alarms, "wsgate-dev-presence-failed", "no presence topics")
	assert.Len(t, alarms, 14)
}

func assertEMFAlarm(t *testing.T, alarms map[string]map[string]any, name, metric, stage string) {
	t.Helper()
	a, ok := alarms[name]
	require.True(t, ok, name)
	assert.Equal(t, metrics.Namespace, a["Namespace"])
	assert.Equal(t, metric, a["MetricName"])
	assert.Equal(t, "Sum", a["Statistic"])
	assert.Equal(t, float64(1), a["Threshold"], "any failure")
	assert.ElementsMatch(t, []any{
		map[string]any{"Name": "Stage", "Value": stage},
		map[string]any{"Name": "Function", "Value": "broadcast"},
	}, a["Dimensions"], "the dimensions broadcast's EMF lines carry")
}

// The stream alarms follow what the mapping feeds: presence failures
// with presence topics, none of the three without a mapping.
func TestStack_StreamAlarmsFollowLifecycleAndPresence(t *testing.T) {
	names := func(s *synthesized) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, a := range s.resources("AWS::CloudWatch::Alarm") {
			out[props(a)["AlarmName"].(string)] = props(a)
		}
		return out
	}
	both := names(synth(t, map[string]string{"presenceTopics": "room.*"}))
	assertEMFAlarm(t, both, "wsgate-dev-lifecycle-events-failed", "LifecycleEventsFailed", "dev")
	assertEMFAlarm(t, both, "wsgate-dev-presence-failed", "PresenceFailed", "dev")
	assert.Contains(t, both, "wsgate-dev-stream-iterator-age")

	presence := names(synth(t, map[string]string{"lifecycleEvents": "false", "presenceTopics": "room.*"}))
	assert.Contains(t, presence, "wsgate-dev-stream-iterator-age")
	assert.Contains(t, presence, "wsgate-dev-presence-failed")
	assert.NotContains(t, presence, "wsgate-dev-lifecycle-events-failed")

	off := names(synth(t, map[string]string{"lifecycleEvents": "false"}))
	for _, name := range []string{"wsgate-dev-stream-iterator-age", "wsgate-dev-lifecycle-events-failed", "wsgate-dev-presence-failed"} {
		assert.NotContains(t, off, name, "no stream mapping")
	}
}

func TestStack_AlarmEmailGetsEveryAlarm(t *testing.T) {
	s := synth(t, configured)
	topicID, topic := s.one(t, "AWS::SNS::Topic")
	assert.Equal(t, "wsgate-staging-alarms", props(topic)["TopicName"])
	_, sub := s.one(t, "AWS::SNS::Subscription")
	assert.Equal(t, "email", props(sub)["Protocol"])
	assert.Equal(t, "ops@example.com", props(sub)["Endpoint"])
	for id, a := range s.resources("AWS::CloudWatch::Alarm") {
		assert.Equal(t, []any{ref(topicID)}, props(a)["AlarmActions"], id)
		assert.Equal(t, []any{ref(topicID)}, props(a)["OKActions"], id)
	}
	var tls bool
	for _, pol := range s.resources("AWS::SNS::TopicPolicy") {
		tls = tls || strings.Contains(toJSON(t, pol), "aws:SecureTransport")
	}
	assert.True(t, tls, "the topic enforces TLS")
}

func TestStack_DashboardShowsTrafficDeliveriesAndQueues(t *testing.T) {
	s := synth(t, defaults)
	_, d := s.one(t, "AWS::CloudWatch::Dashboard")
	assert.Equal(t, "wsgate-dev", props(d)["DashboardName"])
	body := toJSON(t, props(d)["DashboardBody"])
	for _, m := range []string{
		`\"AWS/ApiGateway\",\"ConnectCount\"`, `\"MessageCount\"`, `\"IntegrationError\"`, `\"ClientError\"`, `\"ExecutionError\"`,
		`\"` + metrics.Namespace + `\",\"Delivered\"`, `\"Failed\"`, `\"Gone\"`, `\"Throttled\"`, `\"Retried\"`,
		`\"FanoutDuration\"`, `\"EventAge\"`,
		`\"AWS/Lambda\",\"Duration\"`, `\"AWS/Lambda\",\"Errors\"`, `\"AWS/Lambda\",\"Throttles\"`,
		`\"AWS/SQS\",\"ApproximateNumberOfMessagesVisible\"`, `\"alarms\"`,
		`\"AWS/SQS\",\"ApproximateAgeOfOldestMessage\"`,
		`\"AWS/Lambda\",\"IteratorAge\"`, `\"LifecycleEventsFailed\"`, `\"PresenceFailed\"`,
	} {
		assert.Contains(t, body, m)
	}
	for _, q := range []string{"tasks", "tasks-dlq", "events-dlq", "disconnects", "disconnects-dlq"} {
		id, _ := s.queueNamed(t, q)
		assert.Contains(t, body, `"`+id+`"`, "the %s queue's depth", q)
	}
}

func TestStack_OutputsForClientsAndPublishers(t *testing.T) {
	s := synth(t, defaults)
	outputs := s.tmpl["Outputs"].(map[string]any)
	for _, o := range []string{"WebSocketUrl", "ManagementEndpoint", "EventBusName", "EventBusArn", "TableName", "TaskQueueUrl", "JwtSecretArn", "DashboardUrl"} {
		assert.Contains(t, outputs, o)
	}
	url := toJSON(t, outputs["WebSocketUrl"].(map[string]any)["Value"])
	assert.Contains(t, url, `"wss://"`)
	assert.Contains(t, url, `"/dev"`)
	assert.Contains(t, toJSON(t, outputs["ManagementEndpoint"].(map[string]any)["Value"]), `"https://"`)
	busID, _ := s.one(t, "AWS::Events::EventBus")
	assert.Equal(t, ref(busID), outputs["EventBusName"].(map[string]any)["Value"])
	assert.Equal(t, getAtt(busID, "Arn"), outputs["EventBusArn"].(map[string]any)["Value"])
	assert.NotContains(t, outputs, "CustomDomainUrl")
}

func TestStack_CustomDomainMapsToStage(t *testing.T) {
	s := synth(t, configured)
	domainID, domain := s.one(t, "AWS::ApiGatewayV2::DomainName")
	assert.Equal(t, "ws.example.com", props(domain)["DomainName"])
	cfg := props(domain)["DomainNameConfigurations"].([]any)[0].(map[string]any)
	assert.Equal(t, configured["certificateArn"], cfg["CertificateArn"])
	assert.Equal(t, "TLS_1_2", cfg["SecurityPolicy"])
	assert.Equal(t, "REGIONAL", cfg["EndpointType"])

	apiID, _ := s.one(t, "AWS::ApiGatewayV2::Api")
	stageID, _ := s.one(t, "AWS::ApiGatewayV2::Stage")
	_, mapping := s.one(t, "AWS::ApiGatewayV2::ApiMapping")
	assert.Equal(t, ref(apiID), props(mapping)["ApiId"])
	assert.Equal(t, ref(domainID), props(mapping)["DomainName"])
	assert.Equal(t, "staging", props(mapping)["Stage"])
	assert.Contains(t, mapping["DependsOn"], stageID, "mapped once the stage exists")

	outputs := s.tmpl["Outputs"].(map[string]any)
	assert.Equal(t, "wss://ws.example.com", outputs["CustomDomainUrl"].(map[string]any)["Value"])
	assert.Equal(t, getAtt(domainID, "RegionalDomainName"), outputs["CustomDomainTarget"].(map[string]any)["Value"])
}

func TestStack_NamesDerivedFromStage(t *testing.T) {
	for _, ctx := range []map[string]string{defaults, configured} {
		s := synth(t, ctx)
		prefix := "wsgate-" + s.stage
		_, api := s.one(t, "AWS::ApiGatewayV2::Api")
		assert.Equal(t, prefix, props(api)["Name"])
		for name := range want {
			s.function(t, name) // fails when not named prefix-name
		}
		var queues []string
		for _, q := range s.resources("AWS::SQS::Queue") {
			queues = append(queues, props(q)["QueueName"].(string))
		}
		assert.ElementsMatch(t, []string{prefix + "-tasks", prefix + "-tasks-dlq", prefix + "-events-dlq", prefix + "-disconnects", prefix + "-disconnects-dlq"}, queues)
		var rules []string
		for _, r := range s.resources("AWS::Events::Rule") {
			rules = append(rules, props(r)["Name"].(string))
		}
		assert.ElementsMatch(t, []string{prefix + "-broadcast", prefix + "-revoke"}, rules)
		for id, a := range s.resources("AWS::CloudWatch::Alarm") {
			assert.True(t, strings.HasPrefix(props(a)["AlarmName"].(string), prefix+"-"), id)
		}
		assert.Equal(t, "wsgate-"+s.stage, *s.stack.StackName())
	}
}

func TestStack_TemplateIsEnvironmentAgnostic(t *testing.T) {
	s := synth(t, defaults)
	body := toJSON(t, s.tmpl)
	assert.NotRegexp(t, regexp.MustCompile(`\b\d{12}\b`), body, "no account id")
	assert.NotRegexp(t, regexp.MustCompile(`\b(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d\b`), body, "no region")
	assert.NotContains(t, body, "amazonaws.com/", "no hard-coded endpoints")
}

// TestStack_CdkNagFindsNoUnsuppressedIssues applies the AwsSolutions pack
// (as `cdk synth` does) to every variant: any finding not suppressed with
// a reason is an error or warning annotation.
func TestStack_CdkNagFindsNoUnsuppressedIssues(t *testing.T) {
	for _, ctx := range allContexts {
		s := synth(t, ctx)
		ann := assertions.Annotations_FromStack(s.stack)
		nag := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
		errs := ann.FindError(jsii.String("*"), nag)
		warns := ann.FindWarning(jsii.String("*"), nag)
		for _, m := range *errs {
			t.Errorf("%s: cdk-nag error at %s: %v", s.stage, *m.Id, m.Entry.Data)
		}
		for _, m := range *warns {
			t.Errorf("%s: cdk-nag warning at %s: %v", s.stage, *m.Id, m.Entry.Data)
		}
	}
}

// TestStack_SuppressionsGiveSpecificReasons reads the cdk-nag suppressions
// written into the template's metadata.
func TestStack_SuppressionsGiveSpecificReasons(t *testing.T) {
	rules := map[string]int{}
	for _, ctx := range allContexts {
		s := synth(t, ctx)
		for id, r := range s.tmpl["Resources"].(map[string]any) {
			md, _ := r.(map[string]any)["Metadata"].(map[string]any)
			nag, _ := md["cdk_nag"].(map[string]any)
			sups, _ := nag["rules_to_suppress"].([]any)
			for _, raw := range sups {
				sup := raw.(map[string]any)
				rules[sup["id"].(string)]++
				assert.GreaterOrEqual(t, len(sup["reason"].(string)), 40, "%s %s: say why", id, sup["id"])
				if sup["id"] == "AwsSolutions-IAM5" {
					assert.NotEmpty(t, sup["applies_to"], "%s: IAM5 suppressions name the wildcard they accept", id)
				}
			}
		}
	}
	// The findings the stack answers by design, and no others.
	assert.ElementsMatch(t, []string{"AwsSolutions-IAM5", "AwsSolutions-APIG4", "AwsSolutions-SQS3", "AwsSolutions-SMG4", "AwsSolutions-SNS2"}, keys(rules))
}

func TestStack_MissingZipsTellToRunMakeBuild(t *testing.T) {
	empty := t.TempDir()
	ctx := cdkJSONContext(t)
	ctx["binDir"] = empty
	app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(t.TempDir())})
	_, err := build(app)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "make build")
	assert.Contains(t, err.Error(), "connect.zip")
}

// Helpers specific to these tests.

func (s *synthesized) queueNamed(t *testing.T, suffix string) (string, map[string]any) {
	t.Helper()
	for id, q := range s.resources("AWS::SQS::Queue") {
		if props(q)["QueueName"] == "wsgate-"+s.stage+"-"+suffix {
			return id, q
		}
	}
	require.Failf(t, "queue not found", "%s", suffix)
	return "", nil
}

// routeIntegration is the logical id of the route for key and the
// properties of its integration.
func (s *synthesized) routeIntegration(t *testing.T, key string) (string, map[string]any) {
	t.Helper()
	for id, r := range s.resources("AWS::ApiGatewayV2::Route") {
		if props(r)["RouteKey"] != key {
			continue
		}
		target := toJSON(t, props(r)["Target"])
		for iid, i := range s.resources("AWS::ApiGatewayV2::Integration") {
			if strings.Contains(target, `"`+iid+`"`) {
				return id, props(i)
			}
		}
		require.Failf(t, "route without integration", "%s: %s", key, target)
	}
	require.Failf(t, "route not found", "%s", key)
	return "", nil
}

func (s *synthesized) taskQueue(t *testing.T) (string, map[string]any) {
	t.Helper()
	return s.queueNamed(t, "tasks")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func mapGetter(m map[string]any) func(string) any {
	return func(k string) any { return m[k] }
}

func TestStack_ArchitectureFollowsContext(t *testing.T) {
	s := synth(t, map[string]string{"architecture": "x86_64"})
	for name := range want {
		_, p := s.function(t, name)
		assert.Equal(t, []any{"x86_64"}, p["Architectures"], name)
	}
}
