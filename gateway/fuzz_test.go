package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tether-go/tether/gateway"
)

// FuzzGatewayRequest sends arbitrary bodies to the gateway's HTTP handler.
// Nothing may panic; every answer is one of the documented statuses, and
// every 200 body is a JSON-RPC 2.0 response or a batch of them.
func FuzzGatewayRequest(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[1,2]}`,
		`{"jsonrpc":"2.0","id":"x","method":"shop.Place","params":[{"id":9,"blob":"AAE=","at":"2026-11-21T10:30:00Z","qty":{"a":1},"price":1.5}]}`,
		`{"jsonrpc":"2.0","id":2,"method":"shop.Move","params":[{"$type":"gw.Point","X":1},3]}`,
		`{"jsonrpc":"2.0","id":3,"method":"shop.Echo","params":[{"$type":"gw.Point","$value":[1,2]}]}`,
		`{"jsonrpc":"2.0","id":4,"method":"shop.Counts","params":[[[1,"one"]]]}`,
		`{"jsonrpc":"2.0","id":5,"method":"shop.Sum","params":[1,2,3]}`,
		`{"jsonrpc":"2.0","id":6,"method":"shop.Open","params":["c"]}`,
		`{"jsonrpc":"2.0","id":7,"method":"shop.Mine","params":[{"$ref":"ref-00000000-0000-0000-0000-000000000000"}]}`,
		`{"jsonrpc":"2.0","id":8,"method":"shop.Model"}`,
		`{"jsonrpc":"2.0","id":9,"method":"rpc.describe","params":["shop"]}`,
		`{"jsonrpc":"2.0","method":"shop.Half","params":["NaN"]}`,
		`[{"jsonrpc":"2.0","id":1,"method":"shop.Small","params":[7]},1,{"jsonrpc":"2.0","method":"shop.Buy","params":["x"]}]`,
		`{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[1,`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	// One gateway in front of a real server for the whole run, with short
	// timeouts and few handles so that millions of inputs stay in bounds.
	e := &env{shop: newShop()}
	e.connect(f, startShop(f, e.shop), gateway.WithTimeout(200*time.Millisecond), gateway.WithHandles(time.Minute, 100))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.gw.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusNoContent:
			if rec.Body.Len() != 0 {
				t.Fatalf("204 with a body: %q", rec.Body)
			}
			return
		case http.StatusOK, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		var one map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &one) == nil {
			checkResponse(t, one)
			return
		}
		var many []map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &many); err != nil || len(many) == 0 {
			t.Fatalf("not a response: %q", rec.Body)
		}
		for _, r := range many {
			checkResponse(t, r)
		}
	})
}

func checkResponse(t *testing.T, r map[string]any) {
	if r["jsonrpc"] != "2.0" {
		t.Fatalf("no version: %v", r)
	}
	if _, ok := r["id"]; !ok {
		t.Fatalf("no id: %v", r)
	}
	_, hasResult := r["result"]
	errObj, hasErr := r["error"].(map[string]any)
	if hasResult == hasErr {
		t.Fatalf("want exactly one of result and error: %v", r)
	}
	if hasErr {
		if _, ok := errObj["code"].(float64); !ok {
			t.Fatalf("an error without a code: %v", r)
		}
		if _, ok := errObj["message"].(string); !ok {
			t.Fatalf("an error without a message: %v", r)
		}
	}
}
