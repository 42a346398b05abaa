package main

import (
	"fmt"
	"math"
	"strconv"

	"github.com/vhg/vhg-worker/worker"
)

// pyTypeName is the Python type name of a JSON-decoded value, for the
// messages of the TypeErrors Python would raise.
func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// pyAdd is Python's a + b on JSON values: numbers, strings and lists.
func pyAdd(a, b any) (any, error) {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return x + y, nil
		case float64:
			return float64(x) + y, nil
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return x + float64(y), nil
		case float64:
			return x + y, nil
		}
	case string:
		if y, ok := b.(string); ok {
			return x + y, nil
		}
		return nil, worker.NewTaskError("TypeError", "can only concatenate str (not \"%s\") to str", pyTypeName(b))
	case []any:
		if y, ok := b.([]any); ok {
			return append(append([]any{}, x...), y...), nil
		}
		return nil, worker.NewTaskError("TypeError", "can only concatenate list (not \"%s\") to list", pyTypeName(b))
	}
	return nil, worker.NewTaskError("TypeError", "unsupported operand type(s) for +: '%s' and '%s'", pyTypeName(a), pyTypeName(b))
}

// pyMul is Python's a * b on numbers.
func pyMul(a, b any) (any, error) {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return x * y, nil
		case float64:
			return float64(x) * y, nil
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return x * float64(y), nil
		case float64:
			return x * y, nil
		}
	}
	return nil, worker.NewTaskError("TypeError", "unsupported operand type(s) for *: '%s' and '%s'", pyTypeName(a), pyTypeName(b))
}

// pySum is Python's sum(iterable): 0 plus every item.
func pySum(v any) (any, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, worker.NewTaskError("TypeError", "'%s' object is not iterable", pyTypeName(v))
	}
	var total any = int64(0)
	for _, item := range items {
		var err error
		if total, err = pyAdd(total, item); err != nil {
			return nil, err
		}
	}
	return total, nil
}

// pyTruthy is Python's bool(v).
func pyTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	default:
		return true
	}
}

// pySeconds reads a number of seconds (int or float).
func pySeconds(v any) (float64, error) {
	switch x := v.(type) {
	case int64:
		return float64(x), nil
	case float64:
		if math.IsNaN(x) {
			return 0, worker.NewTaskError("ValueError", "sleep length must be a number, not nan")
		}
		return x, nil
	}
	return 0, worker.NewTaskError("TypeError", "'%s' object cannot be interpreted as a number", pyTypeName(v))
}

// redisValue is how redis-py writes a value: str as is, numbers as their
// Python str(); anything else is refused as redis-py refuses it.
func redisValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	}
	return "", &worker.TaskError{Module: "redis.exceptions", Type: "DataError",
		Args: []any{fmt.Sprintf("Invalid input of type: '%s'. Convert to a bytes, string, int or float first.", pyTypeName(v))}}
}
