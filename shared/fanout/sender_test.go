package fanout_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/fanout/connectionstest"
)

func deliveries(n int) []fanout.Delivery {
	out := make([]fanout.Delivery, n)
	for i := range out {
		out[i] = fanout.Delivery{ConnectionID: fmt.Sprintf("c%03d", i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

func fast(int) time.Duration { return time.Millisecond }

func TestSend_DeliversEveryFrameOnce(t *testing.T) {
	srv := connectionstest.New(t, "local")
	s := fanout.NewSender(srv.Client(), fanout.Options{Workers: 8, Backoff: fast})
	sum := s.Send(context.Background(), deliveries(100))
	assert.Equal(t, 100, sum.Delivered)
	assert.Equal(t, 100, sum.Calls)
	assert.Empty(t, sum.Failed)
	for i := range 100 {
		got := srv.Received(fmt.Sprintf("c%03d", i))
		require.Len(t, got, 1)
		assert.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), string(got[0]))
	}
}

func TestSend_GoneIsReportedNotRetried(t *testing.T) {
	srv := connectionstest.New(t, "local")
	srv.Gone("c001", "c003")
	sum := fanout.NewSender(srv.Client(), fanout.Options{Backoff: fast}).Send(context.Background(), deliveries(5))
	sort.Strings(sum.Gone)
	assert.Equal(t, []string{"c001", "c003"}, sum.Gone)
	assert.Equal(t, 3, sum.Delivered)
	assert.Equal(t, 5, sum.Calls, "410 is final")
	assert.Empty(t, sum.Failed)
}

func TestSend_ThrottledAndServerErrorsAreRetried(t *testing.T) {
	srv := connectionstest.New(t, "local")
	srv.Script("c000", 429, 429)
	srv.Script("c001", 500, 503)
	sum := fanout.NewSender(srv.Client(), fanout.Options{Backoff: fast}).Send(context.Background(), deliveries(3))
	assert.Equal(t, 3, sum.Delivered)
	assert.Equal(t, 4, sum.Retried)
	assert.Equal(t, 2, sum.BufferFull, "one client throttled while others get through: its buffer")
	assert.Zero(t, sum.Throttled)
	assert.Equal(t, 7, sum.Calls)
	assert.Len(t, srv.Received("c000"), 1, "delivered exactly once after the retries")
}

func TestSend_PermanentFailuresAreCountedFailed(t *testing.T) {
	srv := connectionstest.New(t, "local")
	srv.AlwaysFail("c000", 500)
	srv.AlwaysFail("c001", 413)
	sum := fanout.NewSender(srv.Client(), fanout.Options{MaxAttempts: 4, Backoff: fast}).Send(context.Background(), deliveries(3))
	sort.Strings(sum.Failed)
	assert.Equal(t, []string{"c000", "c001"}, sum.Failed)
	assert.Equal(t, 1, sum.Delivered)
	assert.Equal(t, 4+1+1, sum.Calls, "500 tried 4 times, 413 once")
}

func TestSend_RetriesStopBeforeTheDeadline(t *testing.T) {
	srv := connectionstest.New(t, "local")
	srv.AlwaysFail("c000", 503)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	sum := fanout.NewSender(srv.Client(), fanout.Options{MaxAttempts: 1000, Reserve: 300 * time.Millisecond, Backoff: func(int) time.Duration { return 50 * time.Millisecond }}).Send(ctx, deliveries(1))
	assert.Equal(t, []string{"c000"}, sum.Failed)
	assert.NoError(t, ctx.Err(), "gave up before the deadline, leaving the reserve free")
	assert.Greater(t, sum.Calls, 1, "but retried while there was time")
}

// A client whose buffer is full answers 429 again and again; the workers
// must keep serving everyone else meanwhile.
func TestSend_SlowClientDoesNotStallOthers(t *testing.T) {
	srv := connectionstest.New(t, "local")
	srv.AlwaysFail("c000", 429)
	var slowRetries atomic.Int32
	backoff := func(int) time.Duration { slowRetries.Add(1); return 200 * time.Millisecond }
	pacer := &recordingPacer{}
	s := fanout.NewSender(srv.Client(), fanout.Options{Workers: 1, MaxAttempts: 3, Backoff: backoff, Pacer: pacer})
	sum := s.Send(context.Background(), deliveries(20))
	assert.Equal(t, 19, sum.Delivered)
	assert.Equal(t, []string{"c000"}, sum.Failed)
	assert.Equal(t, []string{"c000"}, sum.SlowClients)
	assert.Zero(t, pacer.throttled.Load(), "a slow client does not slow the pacer for everyone")
	assert.Equal(t, int32(2), slowRetries.Load())
	// With a single worker, a blocking retry would hold everyone behind
	// c000; instead all 19 others are served before its first retry.
	log := srv.Log()
	require.Len(t, log, 22)
	assert.Equal(t, "c000", log[0].ID)
	for _, c := range log[1:20] {
		assert.NotEqual(t, "c000", c.ID)
		assert.Equal(t, 200, c.Status)
	}
}

func TestClassify(t *testing.T) {
	srv := connectionstest.New(t, "local")
	c := srv.Client()
	for status, want := range map[int]error{410: fanout.ErrGone, 429: fanout.ErrThrottled, 403: fanout.ErrRejected, 413: fanout.ErrRejected} {
		id := fmt.Sprintf("s%d", status)
		srv.AlwaysFail(id, status)
		_, err := c.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: []byte("x")})
		assert.ErrorIs(t, fanout.Classify(err), want, "%d", status)
	}
	srv.AlwaysFail("s500", http.StatusInternalServerError)
	id := "s500"
	_, err := c.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: []byte("x")})
	require.Error(t, err)
	assert.NotErrorIs(t, fanout.Classify(err), fanout.ErrRejected)
}

type recordingPacer struct {
	throttled, succeeded atomic.Int32
}

func (p *recordingPacer) Wait(context.Context) error { return nil }
func (p *recordingPacer) Throttled()                 { p.throttled.Add(1) }
func (p *recordingPacer) Succeeded()                 { p.succeeded.Add(1) }

func TestSend_AccountWideThrottlingSlowsThePacer(t *testing.T) {
	srv := connectionstest.New(t, "local")
	for i := range 60 {
		srv.Script(fmt.Sprintf("c%03d", i), 429)
	}
	pacer := &recordingPacer{}
	sum := fanout.NewSender(srv.Client(), fanout.Options{Workers: 8, Backoff: fast, Pacer: pacer}).Send(context.Background(), deliveries(60))
	assert.Equal(t, 60, sum.Delivered)
	assert.Positive(t, sum.Throttled, "most calls throttled at once: the account's budget")
	assert.Equal(t, int32(sum.Throttled), pacer.throttled.Load())
	assert.Empty(t, sum.SlowClients)
}

func TestSendTracked_ReportsEachDelivery(t *testing.T) {
	srv := connectionstest.New(t, "local")
	srv.Gone("c002")
	var got sync.Map
	sum := fanout.NewSender(srv.Client(), fanout.Options{Backoff: fast}).SendTracked(context.Background(), deliveries(5), func(i int) { got.Store(i, true) })
	assert.Equal(t, 4, sum.Delivered)
	for i := range 5 {
		_, ok := got.Load(i)
		assert.Equal(t, i != 2, ok, "delivery %d", i)
	}
}

func TestRatePacer_SpacesCallsAndBacksOff(t *testing.T) {
	p := fanout.NewPacer(1000)
	start := time.Now()
	for range 101 {
		require.NoError(t, p.Wait(context.Background()))
	}
	assert.GreaterOrEqual(t, time.Since(start), 95*time.Millisecond, "101 calls at 1000/s span 100 ms")
	p.Throttled()
	assert.Equal(t, 500.0, p.Rate())
	p.Throttled()
	assert.Equal(t, 250.0, p.Rate())
	for range 1000 {
		p.Succeeded()
	}
	assert.Equal(t, 1000.0, p.Rate(), "recovers up to the configured rate, no further")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := fanout.NewPacer(1)
	require.NoError(t, slow.Wait(ctx), "the first call needs no wait")
	assert.Error(t, slow.Wait(ctx), "a cancelled wait returns")
}

func TestLeanPoster_SignsAndReturnsTheSDKsErrors(t *testing.T) {
	var auth, date string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, date = r.Header.Get("Authorization"), r.Header.Get("X-Amz-Date")
		switch r.URL.Path {
		case "/prod/@connections/ok=":
			w.WriteHeader(200)
		case "/prod/@connections/gone":
			w.Header().Set("X-Amzn-ErrorType", "GoneException")
			w.WriteHeader(410)
		case "/prod/@connections/busy":
			w.WriteHeader(429)
		default:
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	p, err := fanout.NewLeanPoster(srv.URL+"/prod/", aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "session")}, srv.Client())
	require.NoError(t, err)
	post := func(id string) error {
		_, err := p.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte("x")})
		return err
	}
	require.NoError(t, post("ok="))
	assert.Contains(t, auth, "AWS4-HMAC-SHA256 Credential=AKID/")
	assert.Contains(t, auth, "/eu-west-1/execute-api/aws4_request")
	assert.NotEmpty(t, date)
	assert.ErrorIs(t, fanout.Classify(post("gone")), fanout.ErrGone)
	assert.ErrorIs(t, fanout.Classify(post("busy")), fanout.ErrThrottled)
	err = fanout.Classify(post("other"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, fanout.ErrRejected, "503 is transient")
	_, err = fanout.NewLeanPoster("not a url", aws.Config{}, srv.Client())
	assert.Error(t, err)
}

// A connection still registering answers 410 for a moment after its
// $connect: the post is retried, and the connection is not reported gone,
// while one that is really gone still is.
func TestSend_SettlingConnectionIsRetriedNotGone(t *testing.T) {
	srv := connectionstest.New(t, "local")
	srv.Script("c000", 410, 410)
	srv.Gone("c001")
	var asked sync.Map
	settling := func(_ context.Context, id string) bool {
		asked.Store(id, true)
		return id == "c000"
	}
	sum := fanout.NewSender(srv.Client(), fanout.Options{Backoff: fast, Settling: settling}).
		Send(context.Background(), deliveries(3))
	assert.Equal(t, []string{"c001"}, sum.Gone)
	assert.Equal(t, 2, sum.Delivered)
	assert.Equal(t, 2, sum.Settling)
	assert.Len(t, srv.Received("c000"), 1)
	_, ok := asked.Load("c001")
	assert.True(t, ok, "every 410 is checked")

	assert.True(t, fanout.Settling(time.Now().Add(-time.Second), time.Now()))
	assert.False(t, fanout.Settling(time.Now().Add(-fanout.ConnectWindow), time.Now()))
	assert.False(t, fanout.Settling(time.Time{}, time.Now()), "unknown connect time: not settling")
}
