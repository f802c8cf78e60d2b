// Command cluster shows a fleet found through etcd: three region servers
// announce themselves, agents connect to all of them (remote.ConnectAll)
// and register by id, a region calls one agent by id and gathers from all,
// then one region is drained and restarted while a client's calls go on.
//
//	cd contrib/etcd && go run ./examples/cluster              # an etcd inside the process
//	cd contrib/etcd && go run ./examples/cluster -etcd host:port
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/tether-go/tether/contrib/etcd/internal/etcdtest"
)

// main runs the demo and exits 1 on failure.
func main() {
	addr := flag.String("etcd", "", "host:port of a running etcd (default: start one inside this process)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// run plays the demo, writing its transcript to out; etcdAddr empty
// starts an etcd inside the process.
func run(ctx context.Context, out io.Writer, etcdAddr string) error {
	d := &demo{out: out, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if etcdAddr == "" {
		stop, addr, err := embedded(ctx)
		if err != nil {
			return err
		}
		defer stop()
		etcdAddr = addr
		d.say("etcd: started inside this process (give -etcd host:port to use yours)")
	} else {
		d.say("etcd: %s", etcdAddr)
	}
	cli, err := etcdtest.Client(etcdAddr)
	if err != nil {
		return err
	}
	defer cli.Close()
	// A prefix of its own, so that runs against one etcd do not meet.
	d.cli, d.prefix = cli, "/tether-demo/"+uuid.NewString()[:8]+"/regions/"
	defer d.close()
	return d.play(ctx)
}

// embedded starts an etcd in a temporary directory; stop ends it and
// removes the directory.
func embedded(ctx context.Context) (stop func(), addr string, err error) {
	dir, err := os.MkdirTemp("", "tether-cluster-")
	if err != nil {
		return nil, "", err
	}
	e, err := etcdtest.Start(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return func() { e.Close(); os.RemoveAll(dir) }, e.Addr(), nil
}

// say writes one line of the transcript.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}
