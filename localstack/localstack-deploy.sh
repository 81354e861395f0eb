#!/usr/bin/env bash
# Deploys the real CDK stack (infra/) into a LocalStack started with
# localstack/docker-compose.yml, then prints the WebSocket URL and a token.
# It uses cdklocal (npm aws-cdk-local), which points the CDK at LocalStack.
# Not exercised by CI (no Docker there): `make dev` is the tested local path.
set -euo pipefail
cd "$(dirname "$0")/.."

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost.localstack.cloud:4566}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION" CDK_DEFAULT_ACCOUNT=000000000000 CDK_DEFAULT_REGION="$AWS_REGION"
STAGE="${STAGE:-local}"

echo "==> waiting for LocalStack at $AWS_ENDPOINT_URL"
for _ in $(seq 1 60); do
  curl -fsS "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null 2>&1 && break
  sleep 2
done
curl -fsS "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null || { echo "LocalStack is not up (docker compose -f localstack/docker-compose.yml up -d)"; exit 1; }

# Build the functions for this host's architecture so Lambda containers run
# them natively.
case "$(uname -m)" in
  x86_64|amd64) GOARCH=amd64 LAMBDA=x86_64 ;;
  *)            GOARCH=arm64 LAMBDA=arm64 ;;
esac
echo "==> building the functions for linux/$GOARCH"
make build LAMBDA_ARCH="$GOARCH"
npm ci --no-audit --no-fund

CDKLOCAL="npx --yes aws-cdk-local@3.0.4"
export AWS_CDK_CLI="$PWD/node_modules/.bin/cdk"
CONTEXT=(-c "stage=$STAGE" -c "architecture=$LAMBDA" -c apiGatewayCloudWatchRole=false)
echo "==> bootstrapping and deploying wsgate-$STAGE into LocalStack"
(cd infra && $CDKLOCAL bootstrap "${CONTEXT[@]}" && $CDKLOCAL deploy --require-approval never --outputs-file cdk.out/localstack-outputs.json "${CONTEXT[@]}")

OUT=infra/cdk.out/localstack-outputs.json
URL=$(node -e "const o=require('./$OUT'); console.log(Object.values(o)[0].WebSocketUrl)")
SECRET_ARN=$(node -e "const o=require('./$OUT'); console.log(Object.values(o)[0].JwtSecretArn)")
SECRET=$(aws secretsmanager get-secret-value --secret-id "$SECRET_ARN" --query SecretString --output text)
TOKEN=$(go run ./localstack/devtools/cmd/wsgate token --secret "$SECRET" --sub dev --topics '>')
cat <<DONE

wsgate-$STAGE is deployed in LocalStack.
  WebSocket  $URL
  Token      $TOKEN
Listen:   go run ./localstack/devtools/cmd/wsgate listen --url $URL --token $TOKEN --subscribe 'demo.>'
Publish:  go run ./localstack/devtools/cmd/wsgate publish --endpoint $AWS_ENDPOINT_URL --bus wsgate-$STAGE --topic demo.hello --payload '{"hello":"world"}'
DONE
