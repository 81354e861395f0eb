package main

import (
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// suppress records why a cdk-nag AwsSolutions finding does not apply to
// one resource (and its children). appliesTo narrows an IAM5 suppression
// to the named wildcard findings (strings or cdknag.RegexAppliesTo).
func suppress(construct any, rule, reason string, appliesTo ...any) {
	sup := &cdknag.NagPackSuppression{Id: jsii.String(rule), Reason: jsii.String(reason)}
	if len(appliesTo) > 0 {
		sup.AppliesTo = &appliesTo
	}
	cdknag.NagSuppressions_AddResourceSuppressions(construct, &[]*cdknag.NagPackSuppression{sup}, jsii.Bool(true))
}

func regex(r string) cdknag.RegexAppliesTo { return cdknag.RegexAppliesTo{Regex: jsii.String(r)} }

// suppressions are the findings the stack answers by design. Each one
// names the resource and why.
func (g *gateway) suppressions() {
	for _, spec := range functionSpecs {
		f := g.functions[spec.name]
		suppress(f.role, "AwsSolutions-IAM5",
			"X-Ray's xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions; AWS requires Resource * (added by tracing: ACTIVE)",
			"Resource::*")
		if len(spec.manage) > 0 {
			suppress(f.role, "AwsSolutions-IAM5",
				"execute-api:ManageConnections is limited to this API's "+g.s.Stage+" stage and the @connections methods the "+spec.name+
					" function calls; connection ids exist only at run time, hence @connections/*",
				regex(`/^Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<[A-Za-z0-9]+>\/[A-Za-z0-9_-]+\/(POST|DELETE)\/@connections\/\*$/`))
		}
		if spec.readsSecret && g.secret != nil && g.secret.SecretFullArn() == nil {
			suppress(f.role, "AwsSolutions-IAM5",
				"jwtSecretArn is the secret's ARN without its random suffix (a complete ARN is refused: see checkSecretArn); -?????? matches exactly that secret's suffix (Secrets Manager's documented pattern)",
				regex(`/^Resource::arn:.*-\?\?\?\?\?\?$/`))
		}
	}
	if g.s.APIGatewayCloudWatchRole {
		suppress(g.stack.Node().FindChild(jsii.String("ApiGatewayCloudWatchRole")), "AwsSolutions-IAM5",
			"API Gateway's account-wide CloudWatch role serves every API in this account and region, whose log groups API Gateway names itself; it is scoped to this account's and region's logs (the AWS managed policy grants Resource *)",
			regex(`/^Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:\*$/`))
	}
	suppress(g.api, "AwsSolutions-APIG4",
		"The connect function authenticates every connection: JWT from the Authorization header, a bearer.<token> subprotocol, the token query parameter or a cookie; single-use tickets; anonymous topics; and the auth-message mode, which a Lambda authorizer cannot express. $disconnect and $default only serve connections $connect accepted.")
	suppress(g.taskDLQ, "AwsSolutions-SQS3", "This is the task queue's dead-letter queue")
	suppress(g.eventsDLQ, "AwsSolutions-SQS3", "This is the dead-letter queue of the EventBridge target and of the broadcast function's asynchronous invocations")
	if g.s.JWTSecretArn == "" && g.secret != nil {
		suppress(g.secret, "AwsSolutions-SMG4",
			"The HMAC key signs client tokens that backends mint; the functions read it at start-up and accept one key, so rotation is a planned operation (update the secret, restart the functions, re-mint tokens), not a schedule")
	}
	if g.cursorKey != nil {
		suppress(g.cursorKey, "AwsSolutions-SMG4",
			"The key seals presence cursors, which live for one page request; the functions read it at start-up, so rotating it is a restart that only voids cursors in flight, not a schedule")
	}
}
