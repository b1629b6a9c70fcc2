package nn

import (
	"runtime"
	"sync"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// float is the element type of every kernel in this package.
type float interface{ ~float32 | ~float64 }

// scalarOf reads a scalar Value (a *G.F64, *G.F32 or a one-element tensor) as float64.
func scalarOf(v G.Value) (float64, error) {
	switch s := v.(type) {
	case *G.F64:
		return float64(*s), nil
	case *G.F32:
		return float64(*s), nil
	case *tensor.Dense:
		if s.Shape().TotalSize() != 1 {
			return 0, errors.Errorf("expected a scalar, got a tensor of shape %v", s.Shape())
		}
		switch s.Dtype() {
		case tensor.Float64:
			return s.Get(0).(float64), nil
		case tensor.Float32:
			return float64(s.Get(0).(float32)), nil
		}
		return 0, errors.Errorf("expected a float scalar, got %v", s.Dtype())
	}
	return 0, errors.Errorf("expected a scalar, got %T", v)
}

// minParallelWork is the number of elements below which kernels stay on one goroutine.
const minParallelWork = 1 << 15

// parallelRows runs f over [0, rows) split into contiguous chunks, one per core, when rows*width is large
// enough to pay for the goroutines; otherwise it calls f(0, rows) directly. It returns the number of chunks
// used, and f receives its chunk index.
func parallelRows(rows, width int, f func(chunk, lo, hi int)) int {
	workers := runtime.GOMAXPROCS(0)
	if workers > rows {
		workers = rows
	}
	if workers <= 1 || rows*width < minParallelWork {
		f(0, 0, rows)
		return 1
	}
	var wg sync.WaitGroup
	per := (rows + workers - 1) / workers
	n := 0
	for lo := 0; lo < rows; lo += per {
		hi := min(lo+per, rows)
		wg.Add(1)
		go func(c, lo, hi int) {
			defer wg.Done()
			f(c, lo, hi)
		}(n, lo, hi)
		n++
	}
	wg.Wait()
	return n
}

// chunks returns how many chunks parallelRows(rows, width, ·) will use, so callers can size per-chunk
// buffers before the call.
func chunks(rows, width int) int {
	workers := runtime.GOMAXPROCS(0)
	if workers > rows {
		workers = rows
	}
	if workers <= 1 || rows*width < minParallelWork {
		return 1
	}
	per := (rows + workers - 1) / workers
	return (rows + per - 1) / per
}
