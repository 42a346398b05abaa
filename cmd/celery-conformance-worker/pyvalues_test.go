package main

import (
	"errors"
	"reflect"
	"testing"

	"github.com/vhg/vhg-worker/protocol"
	"github.com/vhg/vhg-worker/worker"
)

// TestPyAdd checks Python's + on JSON values, and the TypeError it raises.
func TestPyAdd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b    any
		want    any
		errType string
	}{
		{int64(2), int64(3), int64(5), ""},
		{int64(2), 0.5, 2.5, ""},
		{"Hello ", "world", "Hello world", ""},
		{[]any{int64(1)}, []any{int64(2)}, []any{int64(1), int64(2)}, ""},
		{"a", int64(1), nil, "TypeError"},
		{int64(1), nil, nil, "TypeError"},
	}
	for _, tt := range tests {
		got, err := pyAdd(tt.a, tt.b)
		var te *worker.TaskError
		switch {
		case tt.errType != "" && (!errors.As(err, &te) || te.Type != tt.errType):
			t.Errorf("%#v + %#v: error %v, want %s", tt.a, tt.b, err, tt.errType)
		case tt.errType == "" && (err != nil || !reflect.DeepEqual(got, tt.want)):
			t.Errorf("%#v + %#v = %#v, %v; want %#v", tt.a, tt.b, got, err, tt.want)
		}
	}
}

// TestBind checks that arguments bind to names as a Python call binds them.
func TestBind(t *testing.T) {
	t.Parallel()
	add := pyParams{fn: "add", names: []string{"x", "y", "z"}, required: 2}
	tests := []struct {
		name    string
		params  pyParams
		args    []any
		kwargs  map[string]any
		want    map[string]any
		wantErr string
	}{
		{"positional", add, []any{int64(1), int64(2)}, nil, map[string]any{"x": int64(1), "y": int64(2), "z": nil}, ""},
		{"keyword", add, []any{int64(1)}, map[string]any{"y": int64(2), "z": int64(3)}, map[string]any{"x": int64(1), "y": int64(2), "z": int64(3)}, ""},
		{"missing", add, []any{int64(1)}, nil, nil, "add() missing 1 required positional argument: 'y'"},
		{"twice", add, []any{int64(1), int64(2)}, map[string]any{"x": int64(3)}, nil, "add() got multiple values for argument 'x'"},
		{"unexpected", add, []any{int64(1), int64(2)}, map[string]any{"w": int64(3)}, nil, "add() got an unexpected keyword argument 'w'"},
		{"too many", add, []any{int64(1), int64(2), int64(3), int64(4)}, nil, nil, "add() takes 3 positional arguments but 4 were given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			task := &worker.Task{Msg: &protocol.Message{Task: "add", Args: tt.args, Kwargs: tt.kwargs}}
			got, err := tt.params.bind(task)
			if tt.wantErr != "" {
				var te *worker.TaskError
				if !errors.As(err, &te) || te.Type != "TypeError" || te.Args[0] != tt.wantErr {
					t.Fatalf("error %v, want TypeError %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got.named, tt.want) {
				t.Fatalf("bound %v, %v; want %v", got.named, err, tt.want)
			}
		})
	}
}

// TestNestedSignaturesRebuild checks that every signature a
// return_nested_signature_* task returns passes rebuild_signature.
func TestNestedSignaturesRebuild(t *testing.T) {
	t.Parallel()
	for name, build := range nestedSignatures {
		raw, err := protocol.MarshalJSON(build().Map())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v, err := protocol.UnmarshalJSON(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sg, err := protocol.ParseSignature(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := checkNested(sg); err != nil {
			t.Errorf("%s does not rebuild: %v", name, err)
		}
	}
	if err := checkNested(protocol.NewChain(protocol.Signature{})); err == nil {
		t.Error("a chain holding a non-signature rebuilt")
	}
}
