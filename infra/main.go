// Command infra is the wsgate CDK app: `cdk synth` / `cdk deploy` (run
// from infra/, see docs/deploy.md) turn it into one CloudFormation stack,
// wsgate-<stage>. Settings come from CDK context; see settings.go.
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	if _, err := build(app); err != nil {
		fmt.Fprintln(os.Stderr, "wsgate infra:", err)
		os.Exit(1)
	}
	app.Synth(nil)
}

// build adds the stack for the context's settings to app, with cdk-nag's
// AwsSolutions checks: an unsuppressed finding is an error annotation,
// which fails `cdk synth` and `cdk deploy`.
func build(app awscdk.App) (awscdk.Stack, error) {
	s, err := SettingsFromContext(app.Node())
	if err != nil {
		return nil, err
	}
	// No env: the template is account- and region-agnostic, so it
	// synthesizes offline without credentials; cdk deploy fills both in.
	stack, err := NewGatewayStack(app, "wsgate-"+s.Stage, &GatewayStackProps{Settings: s})
	if err != nil {
		return nil, err
	}
	awscdk.Tags_Of(stack).Add(jsii.String("project"), jsii.String("wsgate"), nil)
	awscdk.Tags_Of(stack).Add(jsii.String("stage"), jsii.String(s.Stage), nil)
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return stack, nil
}
