// Command rmq-go-driver drives the official Go RocketMQ client (github.com/apache/rocketmq-client-go/v2)
// for tidemq interop tests. It prints one JSON object per line on stdout; the client's own logging goes
// to stderr at level "error" unless --log-level says otherwise.
//
//	rmq-go-driver produce --namesrv A --topic T --group G --count N [--mode sync|oneway|orderly]
//	    [--tag X] [--keys K] [--prop k=v ...] [--body TEXT] [--shard S] [--timeout-s S]
//	rmq-go-driver push-consume --namesrv A --topic T --group G [--expr "TagA || TagB"] [--expect N]
//	    [--timeout-s S] [--model CLUSTERING|BROADCASTING] [--instance NAME] [--exit-after-s S]
//	    [--from first|last] [--orderly] [--fail-times K]
//
// In --body and --keys, "{i}" is replaced by the message index. Exit status: 0 on success, 1 on a failed
// send or a consume timeout, 2 on bad usage.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

var outMu sync.Mutex

// emit writes one JSON line to stdout with a single write call.
func emit(v map[string]interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]interface{}{"event": "error", "error": err.Error()})
	}
	b = append(b, '\n')
	outMu.Lock()
	defer outMu.Unlock()
	_, _ = os.Stdout.Write(b)
}

func fail(code int, format string, args ...interface{}) {
	emit(map[string]interface{}{"event": "error", "error": fmt.Sprintf(format, args...)})
	os.Exit(code)
}

type propList []string

func (p *propList) String() string     { return strings.Join(*p, ",") }
func (p *propList) Set(v string) error { *p = append(*p, v); return nil }

func parseProps(raw []string) (map[string]string, error) {
	props := map[string]string{}
	for _, kv := range raw {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--prop wants k=v, got %q", kv)
		}
		props[k] = v
	}
	return props, nil
}

// shardSelector sends a message to queue (shard % queue count), the shard being the decimal sharding key,
// like the C++ driver's `arg % n` selector. Keys that are not integers fall back to queue 0.
type shardSelector struct{}

func (shardSelector) Select(msg *primitive.Message, mqs []*primitive.MessageQueue, _ string) *primitive.MessageQueue {
	n, err := strconv.Atoi(msg.GetShardingKey())
	if err != nil || n < 0 {
		n = 0
	}
	return mqs[n%len(mqs)]
}

func setLogLevel(level string) {
	if level == "" {
		level = os.Getenv("ROCKETMQ_GO_LOG_LEVEL")
	}
	if level == "" {
		level = "error"
	}
	rlog.SetLogLevel(level)
}

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ";") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func produce(args []string) int {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	namesrv := fs.String("namesrv", "", "name server address(es), ';'-separated")
	topic := fs.String("topic", "", "topic")
	group := fs.String("group", "", "producer group")
	count := fs.Int("count", 1, "number of messages")
	mode := fs.String("mode", "sync", "sync|oneway|orderly")
	tag := fs.String("tag", "", "tag")
	keys := fs.String("keys", "", "keys, space-separated; {i} is the message index")
	body := fs.String("body", "msg-{i}", "body; {i} is the message index")
	shard := fs.Int("shard", -1, "orderly: fixed shard instead of the message index")
	timeoutS := fs.Float64("timeout-s", 60, "overall deadline in seconds")
	sendTimeoutMs := fs.Int("send-timeout-ms", 3000, "per-send timeout")
	retries := fs.Int("retries", 2, "producer retries")
	instance := fs.String("instance", "", "instance name")
	logLevel := fs.String("log-level", "", "client log level (default error, or $ROCKETMQ_GO_LOG_LEVEL)")
	var rawProps propList
	fs.Var(&rawProps, "prop", "user property k=v (repeatable)")
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	if *namesrv == "" || *topic == "" || *group == "" {
		fmt.Fprintln(os.Stderr, "produce: --namesrv, --topic and --group are required")
		return 2
	}
	if *mode != "sync" && *mode != "oneway" && *mode != "orderly" {
		fmt.Fprintf(os.Stderr, "produce: bad --mode %q\n", *mode)
		return 2
	}
	props, err := parseProps(rawProps)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	setLogLevel(*logLevel)

	opts := []producer.Option{
		producer.WithNameServer(splitAddrs(*namesrv)),
		producer.WithGroupName(*group),
		producer.WithRetry(*retries),
		producer.WithSendMsgTimeout(time.Duration(*sendTimeoutMs) * time.Millisecond),
	}
	if *instance != "" {
		opts = append(opts, producer.WithInstanceName(*instance))
	}
	if *mode == "orderly" {
		opts = append(opts, producer.WithQueueSelector(shardSelector{}))
	}
	p, err := rocketmq.NewProducer(opts...)
	if err != nil {
		fail(1, "new producer: %v", err)
	}
	if err := p.Start(); err != nil {
		fail(1, "start producer: %v", err)
	}
	emit(map[string]interface{}{"event": "started", "role": "producer"})

	deadline := time.Now().Add(time.Duration(*timeoutS * float64(time.Second)))
	start := time.Now()
	sent, failed := 0, 0
	for i := 0; i < *count; i++ {
		if time.Now().After(deadline) {
			emit(map[string]interface{}{"event": "error", "error": "deadline reached", "index": i})
			failed += *count - i
			break
		}
		idx := strconv.Itoa(i)
		msg := primitive.NewMessage(*topic, []byte(strings.ReplaceAll(*body, "{i}", idx)))
		if *tag != "" {
			msg.WithTag(*tag)
		}
		if *keys != "" {
			msg.WithKeys(strings.Fields(strings.ReplaceAll(*keys, "{i}", idx)))
		}
		for k, v := range props {
			msg.WithProperty(k, v)
		}
		if *mode == "orderly" {
			s := i
			if *shard >= 0 {
				s = *shard
			}
			msg.WithShardingKey(strconv.Itoa(s))
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		line := map[string]interface{}{"event": "sent", "index": i, "mode": *mode}
		if *mode == "oneway" {
			err = p.SendOneWay(ctx, msg)
			if err == nil {
				line["status"] = "SEND_OK"
			}
		} else {
			var res *primitive.SendResult
			res, err = p.SendSync(ctx, msg)
			if err == nil {
				line["status"] = sendStatusName(res.Status)
				line["msg_id"] = res.MsgID
				line["offset_msg_id"] = res.OffsetMsgID
				line["offset"] = res.QueueOffset
				if res.MessageQueue != nil {
					line["queue_id"] = res.MessageQueue.QueueId
					line["broker_name"] = res.MessageQueue.BrokerName
				}
				if res.Status != primitive.SendOK {
					err = fmt.Errorf("send status %s", sendStatusName(res.Status))
				}
			}
		}
		cancel()
		if err != nil {
			failed++
			line["event"] = "send_failed"
			line["error"] = err.Error()
		} else {
			sent++
		}
		emit(line)
	}
	elapsed := time.Since(start).Seconds()
	if err := p.Shutdown(); err != nil {
		emit(map[string]interface{}{"event": "error", "error": "shutdown: " + err.Error()})
	}
	emit(map[string]interface{}{"event": "summary", "sent": sent, "failed": failed, "elapsed_s": elapsed})
	if failed > 0 {
		return 1
	}
	return 0
}

func sendStatusName(s primitive.SendStatus) string {
	switch s {
	case primitive.SendOK:
		return "SEND_OK"
	case primitive.SendFlushDiskTimeout:
		return "FLUSH_DISK_TIMEOUT"
	case primitive.SendFlushSlaveTimeout:
		return "FLUSH_SLAVE_TIMEOUT"
	case primitive.SendSlaveNotAvailable:
		return "SLAVE_NOT_AVAILABLE"
	default:
		return "UNKNOWN_ERROR"
	}
}

func pushConsume(args []string) int {
	fs := flag.NewFlagSet("push-consume", flag.ContinueOnError)
	namesrv := fs.String("namesrv", "", "name server address(es), ';'-separated")
	topic := fs.String("topic", "", "topic")
	group := fs.String("group", "", "consumer group")
	expr := fs.String("expr", "*", "tag expression")
	expect := fs.Int("expect", 0, "exit 0 once this many messages were acknowledged (0: only with --exit-after-s)")
	timeoutS := fs.Float64("timeout-s", 60, "exit 1 if --expect is not reached by then")
	exitAfterS := fs.Float64("exit-after-s", 0, "collect mode: exit 0 after this many seconds")
	model := fs.String("model", "CLUSTERING", "CLUSTERING|BROADCASTING")
	instance := fs.String("instance", "", "instance name (several consumers of one group in one host need distinct names)")
	from := fs.String("from", "last", "where a new group starts: first|last")
	orderly := fs.Bool("orderly", false, "orderly consumer")
	failTimes := fs.Int("fail-times", 0, "answer RECONSUME_LATER while reconsume_times < K")
	logLevel := fs.String("log-level", "", "client log level (default error, or $ROCKETMQ_GO_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	if *namesrv == "" || *topic == "" || *group == "" {
		fmt.Fprintln(os.Stderr, "push-consume: --namesrv, --topic and --group are required")
		return 2
	}
	if *expect <= 0 && *exitAfterS <= 0 {
		fmt.Fprintln(os.Stderr, "push-consume: give --expect N and/or --exit-after-s S")
		return 2
	}
	setLogLevel(*logLevel)

	opts := []consumer.Option{
		consumer.WithNameServer(splitAddrs(*namesrv)),
		consumer.WithGroupName(*group),
		consumer.WithConsumerOrder(*orderly),
	}
	switch strings.ToUpper(*model) {
	case "CLUSTERING":
		opts = append(opts, consumer.WithConsumerModel(consumer.Clustering))
	case "BROADCASTING":
		opts = append(opts, consumer.WithConsumerModel(consumer.BroadCasting))
	default:
		fmt.Fprintf(os.Stderr, "push-consume: bad --model %q\n", *model)
		return 2
	}
	switch *from {
	case "first":
		opts = append(opts, consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
	case "last":
		opts = append(opts, consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset))
	default:
		fmt.Fprintf(os.Stderr, "push-consume: bad --from %q\n", *from)
		return 2
	}
	if *instance != "" {
		opts = append(opts, consumer.WithInstance(*instance))
	}

	var ackedMu sync.Mutex
	acked := map[string]bool{} // distinct message ids acknowledged; redeliveries are not counted twice
	var deliveries atomic.Int64
	done := make(chan struct{})
	var doneOnce sync.Once
	failResult := consumer.ConsumeRetryLater
	if *orderly {
		failResult = consumer.SuspendCurrentQueueAMoment
	}
	listener := func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		result := consumer.ConsumeSuccess
		for _, m := range msgs {
			if int(m.ReconsumeTimes) < *failTimes {
				result = failResult
			}
		}
		for _, m := range msgs {
			deliveries.Add(1)
			line := map[string]interface{}{
				"event":           "message",
				"id":              m.MsgId,
				"offset_msg_id":   m.OffsetMsgId,
				"topic":           m.Topic,
				"tags":            m.GetTags(),
				"keys":            m.GetKeys(),
				"properties":      m.GetProperties(),
				"body":            string(m.Body),
				"body_hex":        hex.EncodeToString(m.Body),
				"queue_id":        m.Queue.QueueId,
				"broker_name":     m.Queue.BrokerName,
				"queue_offset":    m.QueueOffset,
				"reconsume_times": m.ReconsumeTimes,
				"born_host":       m.BornHost,
				"store_host":      m.StoreHost,
				"born_timestamp":  m.BornTimestamp,
				"store_timestamp": m.StoreTimestamp,
				"sys_flag":        m.SysFlag,
				"ack":             result == consumer.ConsumeSuccess,
			}
			emit(line)
		}
		if result == consumer.ConsumeSuccess {
			ackedMu.Lock()
			for _, m := range msgs {
				acked[m.MsgId] = true
			}
			n := len(acked)
			ackedMu.Unlock()
			if *expect > 0 && n >= *expect {
				doneOnce.Do(func() { close(done) })
			}
		}
		return result, nil
	}
	var limit time.Duration
	collect := *exitAfterS > 0
	if collect {
		limit = time.Duration(*exitAfterS * float64(time.Second))
	} else {
		limit = time.Duration(*timeoutS * float64(time.Second))
	}
	selector := consumer.MessageSelector{Type: consumer.TAG, Expression: *expr}
	c, err := startConsumer(opts, *topic, selector, listener, time.Now().Add(limit))
	if err != nil {
		fail(1, "start push consumer: %v", err)
	}
	emit(map[string]interface{}{"event": "started", "role": "push_consumer"})

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	timer := time.NewTimer(limit)
	start := time.Now()
	code := 0
	reason := "expected"
	select {
	case <-done:
	case s := <-sigs:
		reason = "signal " + s.String()
	case <-timer.C:
		if collect {
			reason = "exit_after"
		} else {
			reason = "timeout"
			code = 1
		}
	}
	elapsed := time.Since(start).Seconds()
	shutdownErr := shutdownWithin(c, 15*time.Second)
	ackedMu.Lock()
	received := len(acked)
	ackedMu.Unlock()
	summary := map[string]interface{}{
		"event": "summary", "received": received, "deliveries": deliveries.Load(),
		"reason": reason, "elapsed_s": elapsed,
	}
	if shutdownErr != nil {
		summary["shutdown_error"] = shutdownErr.Error()
	}
	emit(summary)
	return code
}

type listenerFunc = func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error)

// startConsumer creates, subscribes and starts a push consumer. The Go client refuses to start while the topic has
// no route ("route info not found", unlike the C++ client, which keeps retrying), and a failed consumer cannot be
// started again, so a fresh one is made every half second until the deadline.
func startConsumer(opts []consumer.Option, topic string, selector consumer.MessageSelector, listener listenerFunc,
	deadline time.Time) (rocketmq.PushConsumer, error) {
	for attempt := 1; ; attempt++ {
		c, err := rocketmq.NewPushConsumer(opts...)
		if err != nil {
			return nil, fmt.Errorf("new push consumer: %w", err)
		}
		if err := c.Subscribe(topic, selector, listener); err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		err = c.Start()
		if err == nil {
			return c, nil
		}
		if !strings.Contains(err.Error(), "route info not found") || time.Now().After(deadline) {
			return nil, err
		}
		if attempt == 1 {
			emit(map[string]interface{}{"event": "waiting_for_route", "topic": topic, "error": err.Error()})
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func shutdownWithin(c rocketmq.PushConsumer, d time.Duration) error {
	res := make(chan error, 1)
	go func() { res <- c.Shutdown() }()
	select {
	case err := <-res:
		return err
	case <-time.After(d):
		return errors.New("shutdown did not finish in time")
	}
}

func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rmq-go-driver produce|push-consume [flags]  (rmq-go-driver <cmd> -h for flags)")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "produce":
		os.Exit(produce(os.Args[2:]))
	case "push-consume":
		os.Exit(pushConsume(os.Args[2:]))
	case "-h", "--help", "help":
		usage()
		os.Exit(0)
	default:
		usage()
		os.Exit(2)
	}
}
