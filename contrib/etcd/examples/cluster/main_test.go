package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-go/tether/contrib/etcd/internal/etcdtest"
	"github.com/tether-go/tether/internal/leakcheck"
)

// TestClusterDemo runs the demo on an embedded etcd, as `go run` does: it
// ends by itself within its minute, with the transcript's every scene, and
// no call failed while a region restarted.
func TestClusterDemo(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, ""), "transcript so far:\n%s", out.String())
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		`region-3: serving, announced in etcd as region-3`,
		`rack-c: ConnectAll through etcd: region-1, region-2, region-3`,
		`region-1: agents connected: rack-a, rack-b, rack-c`,
		`region-1 -> rack-b \(ConnByName\): rack-b ran "configure dhcp"`,
		`  rack-b: 1 job\(s\) done`,
		`  region-2: region-2 knows rack-a`,
		`(region-\d): withdrawn from etcd, then drained \(Shutdown\)\n  the agents' pools follow: region-\d, region-\d\nfrontend: moved to region-\d by itself\nregion-\d: serving again`,
		`rack-c ran "rotate logs"`,
		`frontend: (\d+) calls to Visit, 0 failed; the regions counted (\d+) visits`,
		`done\n$`,
	} {
		assert.Regexp(t, regexp.MustCompile(want), got)
	}
}

// TestClusterDemoOnAGivenEtcd runs the demo with -etcd pointing at an etcd
// it did not start: it uses it, and leaves no key behind.
func TestClusterDemoOnAGivenEtcd(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := etcdtest.Start(ctx, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(e.Close)
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, e.Addr()), "transcript so far:\n%s", out.String())
	assert.Contains(t, out.String(), "etcd: "+e.Addr()+"\n")
	assert.Contains(t, out.String(), "0 failed")

	cli, err := etcdtest.Client(e.Addr())
	require.NoError(t, err)
	defer cli.Close()
	resp, err := cli.Get(ctx, "/tether-demo/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	assert.Zero(t, resp.Count, "the demo withdrew every region")
}
