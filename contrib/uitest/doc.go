// Package uitest tests the gateway's web inspector (gateway.WithInspector,
// tether ui) in a real browser: headless Chromium driven from Go with
// chromedp. It is a module of its own so that the library never depends on
// a browser driver, and it has no code besides its tests.
//
// The test starts a demo server behind a fault-injecting proxy, a gateway
// with the inspector in front of it, and Chromium; it lists the managers,
// calls a method, follows a handle, watches a model change, cuts the
// server and restores it, and saves a screenshot of each state as PNG in
// the test's artifact directory (go test -artifacts -outputdir DIR keeps
// them; the test logs where they are).
//
// It needs a chromium binary (Debian's package chromium): without one it
// skips, unless TETHER_UITEST_REQUIRE is set, as .ci/run does after
// installing it.
package uitest
