package main

import (
	"strconv"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/aws-cdk-go/awscdk/v2/interfaces/interfacesawscloudwatch"
	"github.com/aws/jsii-runtime-go"

	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/queue"
)

// failedDeliveriesThreshold: deliveries still failing after the fan-out's
// retries, per 5 minutes. A few come from one client with a full buffer;
// more mean account-level throttling or an @connections outage.
const failedDeliveriesThreshold = 10

// fiveMinutes is every metric's period.
func fiveMinutes() awscdk.Duration { return awscdk.Duration_Minutes(jsii.Number(5)) }

// monitoring adds the alarms, the optional SNS topic for them and the
// dashboard.
func (g *gateway) monitoring() {
	var alarms []awscloudwatch.Alarm
	alarm := func(id, name, desc string, m awscloudwatch.IMetric, threshold float64) {
		a := awscloudwatch.NewAlarm(g.stack, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmName:          jsii.String(g.prefix + "-" + name),
			AlarmDescription:   jsii.String(desc),
			Metric:             m,
			Threshold:          jsii.Number(threshold),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		alarms = append(alarms, a)
	}
	sum := &awscloudwatch.MetricOptions{Period: fiveMinutes(), Statistic: jsii.String("Sum")}

	for _, spec := range functionSpecs {
		f := g.functions[spec.name]
		id := *f.fn.Node().Id()
		alarm(id+"ErrorsAlarm", spec.name+"-errors",
			"The "+spec.name+" function failed (crash, timeout or, for broadcast, a storage failure EventBridge retries)",
			f.fn.MetricErrors(sum), 1)
		alarm(id+"ThrottlesAlarm", spec.name+"-throttles",
			"The "+spec.name+" function was throttled: the account's concurrency is exhausted",
			f.fn.MetricThrottles(sum), 1)
	}
	dlqDepth := func(q awssqs.Queue) awscloudwatch.IMetric {
		return q.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: fiveMinutes(), Statistic: jsii.String("Maximum")})
	}
	alarm("TaskDeadLetterAlarm", "task-dlq",
		"Tasks (auth deadlines, replays, fan-out shards) failed "+strconv.Itoa(queue.MaxReceives)+" times: inspect "+g.prefix+"-tasks-dlq",
		dlqDepth(g.taskDLQ), 1)
	alarm("DisconnectDeadLetterAlarm", "disconnects-dlq",
		"Closed connections the disconnect function failed to remove "+strconv.Itoa(queue.MaxReceives)+
			" times (storage failures, or the function failing or throttled): the next fan-out's 410 or the TTL removes them; inspect "+g.prefix+"-disconnects-dlq",
		dlqDepth(g.disconnectDLQ), 1)
	alarm("EventDeadLetterAlarm", "events-dlq",
		"Published events were not delivered after EventBridge's and Lambda's retries: inspect "+g.prefix+"-events-dlq",
		dlqDepth(g.eventsDLQ), 1)
	alarm("FailedDeliveriesAlarm", "failed-deliveries",
		"PostToConnection kept failing after the fan-out's retries (the broadcast function's EMF metric Failed)",
		g.emf("Failed", "Sum"), failedDeliveriesThreshold)
	g.streamAlarms(alarm)

	if g.s.AlarmEmail != "" {
		topic := awssns.NewTopic(g.stack, jsii.String("AlarmTopic"), &awssns.TopicProps{
			TopicName:  jsii.String(g.prefix + "-alarms"),
			EnforceSSL: jsii.Bool(true),
		})
		suppress(topic, "AwsSolutions-SNS2",
			"Alarm notifications carry alarm names and states, nothing sensitive; CloudWatch alarms cannot publish to a topic encrypted with the AWS managed SNS key, and a customer managed key would cost more than the topic")
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(g.s.AlarmEmail), nil))
		action := awscloudwatchactions.NewSnsAction(topic)
		for _, a := range alarms {
			a.AddAlarmAction(action)
			a.AddOkAction(action)
		}
		awscdk.NewCfnOutput(g.stack, jsii.String("AlarmTopicArn"), &awscdk.CfnOutputProps{
			Value: topic.TopicArn(), Description: jsii.String("Alarm notifications (confirm the email subscription)"),
		})
	}
	g.dashboard(alarms)
}

// iteratorAgeThreshold: how far behind the table's stream the mapping to
// broadcast may fall (the age of the last record of a batch, at its
// invocation) before its alarm. Batches wait at most 1 s; a minute means
// batches failing and being retried, or broadcast throttled: lifecycle
// events and presence's join and leave are that late, and records past
// the stream's 24 hours are lost.
const iteratorAgeThreshold = time.Minute

// streamAlarms alarm on the table stream's mapping when there is one: its
// iterator age, and the failures of what it feeds (lifecycle events,
// presence announcements), each of which fails the batch for a retry.
func (g *gateway) streamAlarms(alarm func(id, name, desc string, m awscloudwatch.IMetric, threshold float64)) {
	if len(g.s.StreamFilters()) == 0 {
		return
	}
	broadcast := g.functions["broadcast"].fn
	alarm("StreamIteratorAgeAlarm", "stream-iterator-age",
		"The table stream's mapping to broadcast is a minute or more behind (AWS/Lambda IteratorAge): batches failing and retried, or broadcast throttled; lifecycle events and presence are late, and records older than 24 h are lost",
		broadcast.Metric(jsii.String("IteratorAge"), &awscloudwatch.MetricOptions{Period: fiveMinutes(), Statistic: jsii.String("Maximum")}),
		float64(iteratorAgeThreshold.Milliseconds()))
	if g.s.LifecycleEvents() {
		alarm("LifecycleEventsFailedAlarm", "lifecycle-events-failed",
			"Lifecycle events were not put on the bus (the broadcast function's EMF metric LifecycleEventsFailed); their stream batch is retried, then its metadata goes to "+g.prefix+"-events-dlq and the events are lost",
			g.emf("LifecycleEventsFailed", "Sum"), 1)
	}
	if g.s.Presence() {
		alarm("PresenceFailedAlarm", "presence-failed",
			"Presence join or leave announcements failed (the broadcast function's EMF metric PresenceFailed); rosters or announcements may be late or wrong until a retry succeeds",
			g.emf("PresenceFailed", "Sum"), 1)
	}
}

// emf is a metric the broadcast function writes in embedded metric format.
func (g *gateway) emf(name, stat string) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(metrics.Namespace),
		MetricName:    jsii.String(name),
		DimensionsMap: &map[string]*string{"Stage": jsii.String(g.s.Stage), "Function": jsii.String("broadcast")},
		Statistic:     jsii.String(stat),
		Period:        fiveMinutes(),
	})
}

// apiMetric is one of API Gateway's WebSocket metrics for this stage.
func (g *gateway) apiMetric(name string) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String("AWS/ApiGateway"),
		MetricName:    jsii.String(name),
		DimensionsMap: &map[string]*string{"ApiId": g.api.ApiId(), "Stage": jsii.String(g.s.Stage)},
		Statistic:     jsii.String("Sum"),
		Period:        fiveMinutes(),
	})
}

func (g *gateway) dashboard(alarms []awscloudwatch.Alarm) {
	refs := make([]interfacesawscloudwatch.IAlarmRef, len(alarms))
	for i, a := range alarms {
		refs[i] = a
	}
	graph := func(title string, ms ...awscloudwatch.IMetric) awscloudwatch.IWidget {
		return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title: jsii.String(title), Left: &ms, Width: jsii.Number(8), Height: jsii.Number(6),
		})
	}
	perFunction := func(metric func(f *function) awscloudwatch.IMetric) []awscloudwatch.IMetric {
		var ms []awscloudwatch.IMetric
		for _, spec := range functionSpecs {
			ms = append(ms, metric(g.functions[spec.name]))
		}
		return ms
	}
	fnOpts := func(f *function, stat string) *awscloudwatch.MetricOptions {
		return &awscloudwatch.MetricOptions{Period: fiveMinutes(), Statistic: jsii.String(stat), Label: jsii.String(f.spec.name)}
	}
	queueDepth := func(q awssqs.Queue, label string) awscloudwatch.IMetric {
		return q.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{
			Period: fiveMinutes(), Statistic: jsii.String("Maximum"), Label: jsii.String(label),
		})
	}
	rows := [][]awscloudwatch.IWidget{
		{
			awscloudwatch.NewAlarmStatusWidget(&awscloudwatch.AlarmStatusWidgetProps{
				Title: jsii.String("Alarms"), Alarms: &refs, Width: jsii.Number(24), Height: jsii.Number(3),
			}),
		},
		{
			graph("Connections and messages", g.apiMetric("ConnectCount"), g.apiMetric("MessageCount")),
			graph("API errors", g.apiMetric("ClientError"), g.apiMetric("IntegrationError"), g.apiMetric("ExecutionError")),
			graph("Deliveries", g.emf("Delivered", "Sum"), g.emf("Failed", "Sum"), g.emf("Gone", "Sum"),
				g.emf("Throttled", "Sum"), g.emf("Retried", "Sum")),
		},
		{
			graph("Fan-out duration (ms)", g.emf("FanoutDuration", "p50").With(&awscloudwatch.MetricOptions{Label: jsii.String("p50")}),
				g.emf("FanoutDuration", "p99").With(&awscloudwatch.MetricOptions{Label: jsii.String("p99")})),
			graph("Event age at delivery (ms)", g.emf("EventAge", "p50").With(&awscloudwatch.MetricOptions{Label: jsii.String("p50")}),
				g.emf("EventAge", "p99").With(&awscloudwatch.MetricOptions{Label: jsii.String("p99")})),
			graph("Function duration p99 (ms)", perFunction(func(f *function) awscloudwatch.IMetric {
				return f.fn.MetricDuration(fnOpts(f, "p99"))
			})...),
		},
		{
			graph("Function errors", perFunction(func(f *function) awscloudwatch.IMetric {
				return f.fn.MetricErrors(fnOpts(f, "Sum"))
			})...),
			graph("Function throttles", perFunction(func(f *function) awscloudwatch.IMetric {
				return f.fn.MetricThrottles(fnOpts(f, "Sum"))
			})...),
			graph("Queues (messages visible)", queueDepth(g.tasks, "tasks"), queueDepth(g.taskDLQ, "tasks DLQ"),
				queueDepth(g.eventsDLQ, "events DLQ"), queueDepth(g.disconnectDLQ, "disconnects DLQ")),
		},
		{
			// A cut of every connection fills it; the drain's
			// disconnectMaxConcurrency sets how fast it empties.
			graph("Disconnect queue (messages visible)", queueDepth(g.disconnects, "disconnects")),
			graph("Disconnect queue: oldest message age max (s)", g.disconnects.MetricApproximateAgeOfOldestMessage(
				&awscloudwatch.MetricOptions{Period: fiveMinutes(), Statistic: jsii.String("Maximum"), Label: jsii.String("disconnects")})),
		},
	}
	if len(g.s.StreamFilters()) > 0 {
		broadcast := g.functions["broadcast"].fn
		rows = append(rows, []awscloudwatch.IWidget{
			graph("Table stream: iterator age max (ms)", broadcast.Metric(jsii.String("IteratorAge"),
				&awscloudwatch.MetricOptions{Period: fiveMinutes(), Statistic: jsii.String("Maximum")})),
			graph("Lifecycle events and presence", g.emf("LifecycleEvents", "Sum"), g.emf("LifecycleEventsFailed", "Sum"),
				g.emf("PresenceJoins", "Sum"), g.emf("PresenceLeaves", "Sum"), g.emf("PresenceFailed", "Sum")),
		})
	}
	widgets := make([]*[]awscloudwatch.IWidget, len(rows))
	for i := range rows {
		widgets[i] = &rows[i]
	}
	awscloudwatch.NewDashboard(g.stack, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName: jsii.String(g.prefix),
		Widgets:       &widgets,
	})
	awscdk.NewCfnOutput(g.stack, jsii.String("DashboardUrl"), &awscdk.CfnOutputProps{
		Value: jsii.String("https://console.aws.amazon.com/cloudwatch/home?region=" + *awscdk.Aws_REGION() +
			"#dashboards:name=" + g.prefix),
		Description: jsii.String("The CloudWatch dashboard"),
	})
}
