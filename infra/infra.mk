# The CDK app in infra/: synth, deploy, destroy and its tests. The root
# Makefile includes this file; run the targets from the repository root.
# docs/deploy.md explains the settings (CONTEXT) and what the stack holds.

# The CDK CLI pinned in package.json (npm ci installs it).
INFRA_CDK := $(CURDIR)/node_modules/.bin/cdk
# No version check or telemetry calls, no EC2 metadata probe (synth needs
# no credentials: the template is account- and region-agnostic). Node 20
# runs the CDK but is past its end of life; the jsii runtime's banner
# about it is silenced for 20 only (use Node 22+ where you can).
INFRA_ENV := CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true \
	AWS_EC2_METADATA_DISABLED=true JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
# CONTEXT: CDK context, e.g. CONTEXT="-c stage=prod -c alarmEmail=ops@example.com"
# ARGS: more CDK CLI arguments, e.g. ARGS="--require-approval never"
CONTEXT ?=
ARGS ?=

.PHONY: cdk-cli synth deploy destroy test-infra

# Prints each synthesized template with its resource count.
export INFRA_SUMMARY := const m = require("./infra/cdk.out/manifest.json"); for (const a of Object.values(m.artifacts)) if (a.type === "aws:cloudformation:stack") { const f = "infra/cdk.out/" + a.properties.templateFile; console.log("  " + f + ": " + Object.keys(require("./" + f).Resources).length + " resources"); }

cdk-cli:
	@if [ ! -x $(INFRA_CDK) ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi

# jsii-runtime-go may end the CLI's output with "Runtime process exited
# abnormally: waitid: no child processes" (a race in its shutdown, after the
# template is written): harmless; the echo keeps the summary on its own line.
synth: build cdk-cli ## Write the stack's CloudFormation template to infra/cdk.out (offline)
	cd infra && $(INFRA_ENV) $(INFRA_CDK) synth --quiet --no-notices $(CONTEXT) $(ARGS)
	@echo
	@node -e "$$INFRA_SUMMARY"

deploy: build cdk-cli ## Deploy the stack (CONTEXT="-c stage=prod", ARGS=...); outputs in infra/cdk.out/outputs.json
	cd infra && $(INFRA_ENV) $(INFRA_CDK) deploy --no-notices --outputs-file cdk.out/outputs.json $(CONTEXT) $(ARGS)

destroy: build cdk-cli ## Delete the stack (same CONTEXT; a prod stage keeps its table, secret and logs)
	cd infra && $(INFRA_ENV) $(INFRA_CDK) destroy --no-notices $(CONTEXT) $(ARGS)

test-infra: ## Vet and test the CDK app (offline: no AWS credentials, no make build)
	cd infra && go vet ./... && $(INFRA_ENV) go test -count=1 ./...
