package uitest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
)

// chromium returns the path of a Chromium (or Chrome) binary, or skips the
// test when there is none and TETHER_UITEST_REQUIRE is unset.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("TETHER_UITEST_REQUIRE") != "" {
		t.Fatal("no chromium binary on PATH, and TETHER_UITEST_REQUIRE is set (apt-get install chromium)")
	}
	t.Skip("no chromium binary on PATH: install Debian's chromium package to run the browser test (TETHER_UITEST_REQUIRE=1 makes this a failure)")
	return ""
}

// browser is a headless Chromium tab, and the page's uncaught exceptions.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string // where screenshots go
	mu   sync.Mutex
	errs []string
}

// newBrowser starts Chromium with a fresh profile and no network but
// loopback's, and opens a tab; both end with the test.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 3*time.Minute)
	b := &browser{t: t, ctx: ctx, dir: t.ArtifactDir()}
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 860)), "starting chromium")
	messages := chromedp.Console(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.errs = append(b.errs, m.Text)
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
		<-watched
	})
	t.Logf("screenshots in %s", b.dir)
	return b
}

// do runs actions, failing the test with what was being done.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.failed()
		b.t.Fatalf("%s: %v", what, err)
	}
	b.noExceptions()
}

// noExceptions fails the test if the page threw.
func (b *browser) noExceptions() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Empty(b.t, b.errs, "the page threw")
}

// until waits for a JavaScript predicate to hold.
func (b *browser) until(what, predicate string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		b.failed()
		b.t.Fatalf("waiting until %s (%s): %v", what, predicate, err)
	}
	b.noExceptions()
}

// text returns the text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.CSS(sel)))
	require.NoError(b.t, err, "reading %s", sel)
	return s
}

// shot saves a screenshot of the page as it is, as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	require.NoError(b.t, err, "screenshot %s", name)
	require.NoError(b.t, os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644))
}

// failed saves a screenshot of the page as failed.png, if it still can:
// the test is failing for another reason.
func (b *browser) failed() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		os.WriteFile(filepath.Join(b.dir, "failed.png"), png, 0o644) //nolint:errcheck // best effort
	}
}

// contains is a predicate: the text of the first element sel matches
// contains s.
func contains(sel, s string) string {
	return `(document.querySelector(` + jsString(sel) + `)?.textContent ?? '').includes(` + jsString(s) + `)`
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	return `'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + `'`
}

// TestInspector drives the inspector as a person would: the managers, a
// call and an error, a handle and its method, a model watched live while
// the server changes it, the server cut (the table goes stale, the header
// says so) and restored (live again, with the change made meanwhile).
func TestInspector(t *testing.T) {
	leakcheck.Check(t)
	b := newBrowser(t) // first: it skips without a browser
	d := startDemo(t)

	b.do("opening the page", chromedp.Navigate(d.url))
	b.until("the link is connected", `document.querySelector('#link')?.dataset.state === 'connected'`)
	b.until("the managers are listed", `!!document.querySelector('#managers [data-target="users"]')`)
	b.shot("1-managers")

	// A manager's methods, and a call.
	get := `section.method[data-method="Get"]`
	b.do("opening users", chromedp.Click(chromedp.CSS(`#managers [data-target="users"]`)), chromedp.WaitVisible(chromedp.CSS(get)))
	require.Contains(t, b.text(get+" .sig"), "Get(string) (uitest.User, error)")
	b.do("calling Get", chromedp.SetValue(chromedp.CSS(get+" .arg"), `"alice"`), chromedp.Click(chromedp.CSS(get+" .call")))
	b.until("Get's result shows", contains(get+" .result.ok", "alice@example.com"))
	b.shot("2-call")
	require.Contains(t, b.text(get+" .curl pre"), `-d '{"jsonrpc":"2.0","id":1,"method":"users.Get","params":["alice"]}' `+strings.TrimSuffix(d.url, "ui/"),
		"the same call as a curl command")
	b.do("calling Get with text that is not JSON", chromedp.SetValue(chromedp.CSS(get+" .arg"), `alice`), chromedp.Click(chromedp.CSS(get+" .call")))
	b.until("the page refuses it before sending", contains(get+" .result.error", "is not JSON"))
	b.until("the input is marked", `!!document.querySelector('`+get+` .arg.bad')`)
	b.do("calling Get for nobody", chromedp.SetValue(chromedp.CSS(get+" .arg"), `"nobody"`), chromedp.Click(chromedp.CSS(get+" .call")))
	b.until("Get's error shows", contains(get+" .result.error .err-name", "uitest.no-such-user"))
	require.Contains(t, b.text(get+" .result.error"), `user "nobody": no such user`)
	require.Contains(t, b.text(get+" .result.error .err-code"), "-32000")
	b.shot("3-error")

	// A handle in a result, opened, and its method called.
	login := `section.method[data-method="Login"]`
	b.do("calling Login", chromedp.SetValue(chromedp.CSS(login+" .arg"), `"alice"`), chromedp.Click(chromedp.CSS(login+" .call")))
	b.until("Login's handle shows", `!!document.querySelector('`+login+` .result.ok button.handle')`)
	whoami := `section.method[data-method="Whoami"]`
	b.do("opening the handle", chromedp.Click(chromedp.CSS(login+" .result.ok button.handle")), chromedp.WaitVisible(chromedp.CSS(whoami)))
	b.until("the handle is in the sidebar", `!!document.querySelector('#handles .handle-target.current')`)
	b.do("calling Whoami", chromedp.Click(chromedp.CSS(whoami+" .call")))
	b.until("Whoami's result shows", contains(whoami+" .result.ok", `"alice"`))
	b.shot("4-handle")

	// A model, watched: a change on the server appears in the table.
	model := `section.method[data-method="Model"]`
	table := `.watch-panel[data-method="users.Model"]`
	b.do("back to users", chromedp.Click(chromedp.CSS(`#managers [data-target="users"]`)), chromedp.WaitVisible(chromedp.CSS(model+" .watch")))
	b.do("watching Model", chromedp.Click(chromedp.CSS(model+" .watch")))
	b.until("the table is live", `document.querySelector('`+table+` .model-state')?.dataset.state === 'live'`)
	b.until("the snapshot is in the table", contains(table+` tr[data-key="bob"]`, "bob@example.com"))
	require.NoError(t, d.users.model.Set("carol", User{Name: "carol", Email: "carol@example.com"}))
	b.until("the change is in the table", contains(table+` tr[data-key="carol"]`, "carol@example.com"))
	b.until("the change is highlighted", `!!document.querySelector('`+table+` tr[data-key="carol"].flash')`)
	b.shot("5-model")

	// The server cut: stale, and the header says the link is down; a
	// change made meanwhile arrives once it is back, and the table is
	// live again.
	d.proxy.Refuse(true)
	d.proxy.Reset()
	b.until("the table is stale", `document.querySelector('`+table+` .model-state')?.dataset.state === 'stale'`)
	b.until("the header shows the link down", `document.querySelector('#link')?.dataset.state !== 'connected'`)
	require.True(t, d.users.model.Delete("bob"))
	b.shot("6-stale")
	d.proxy.Refuse(false)
	b.until("the table is live again", `document.querySelector('`+table+` .model-state')?.dataset.state === 'live'`)
	b.until("the deletion made meanwhile arrived", `!document.querySelector('`+table+` tr[data-key="bob"]')`)
	b.until("the link is connected again", `document.querySelector('#link')?.dataset.state === 'connected'`)
	b.shot("7-live")

	b.do("closing the table", chromedp.Click(chromedp.CSS(table+" .close")))
	b.until("the table is gone", `!document.querySelector('`+table+`')`)

	// The handle, given back.
	// (Login is not idempotent, so after the outage the gateway does not
	// call it again: the handle may only say it expired. It can still be
	// given back.)
	b.do("opening the handle again", chromedp.Click(chromedp.CSS(`#handles .handle-target`)), chromedp.WaitVisible(chromedp.CSS(`.target-head .release`)))
	b.do("releasing it", chromedp.Click(chromedp.CSS(`.target-head .release`)))
	b.until("the handle is gone from the sidebar", `!document.querySelector('#handles .handle-target')`)
	b.until("the page says so", contains("#target", "Released ref-"))
}

// TestInspectorAsksForTheToken: with a bearer token on the gateway the
// page asks for it (again, saying why, when it is wrong), sends it with
// its calls and its watches (as access_token), and keeps it for the tab.
func TestInspectorAsksForTheToken(t *testing.T) {
	leakcheck.Check(t)
	b := newBrowser(t)
	d := startDemo(t, gateway.WithToken("s3cret"))
	submit := chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`))
	b.do("opening the page", chromedp.Navigate(d.url))
	b.until("the page asks for the token", `document.querySelector('#token-dialog')?.open === true`)
	b.do("giving a wrong token", chromedp.SetValue(chromedp.CSS(`#token-input`), "wrong"), submit)
	b.until("the page asks again, saying why", `document.querySelector('#token-dialog')?.open === true && `+contains("#token-why", "refused"))
	b.shot("1-token")
	b.do("giving the token", chromedp.SetValue(chromedp.CSS(`#token-input`), "s3cret"), submit)
	b.until("the managers are listed", `!!document.querySelector('#managers [data-target="users"]')`)

	model := `section.method[data-method="Model"]`
	table := `.watch-panel[data-method="users.Model"]`
	b.do("opening users", chromedp.Click(chromedp.CSS(`#managers [data-target="users"]`)), chromedp.WaitVisible(chromedp.CSS(model+" .watch")))
	b.do("watching Model", chromedp.Click(chromedp.CSS(model+" .watch")))
	b.until("the table is live", `document.querySelector('`+table+` .model-state')?.dataset.state === 'live'`)
	b.until("the snapshot is in the table", contains(table+` tr[data-key="alice"]`, "alice@example.com"))
	b.shot("2-watching")

	b.do("opening the page again", chromedp.Navigate(d.url))
	b.until("the managers are listed without asking", `!!document.querySelector('#managers [data-target="users"]')`)
	b.until("the dialog stayed closed", `document.querySelector('#token-dialog')?.open === false`)
}
