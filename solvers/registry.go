package solvers

import (
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// paramState is the optimizer state of one parameter, keyed by its name: its shape and dtype (fixed at
// the first step), its own step counter (as torch keeps one per parameter) and its buffers.
type paramState struct {
	name  string
	dtype tensor.Dtype
	shape []int
	step  int64
	scal  []float64 // rule-specific per-parameter scalars
	bufs  []string
	b32   [][]float32
	b64   [][]float64
}

func (s *paramState) size() int { return tensor.Shape(s.shape).TotalSize() }

// bytes is the memory the state's buffers hold.
func (s *paramState) bytes() int64 {
	var n int64
	for _, b := range s.b32 {
		n += int64(len(b)) * 4
	}
	for _, b := range s.b64 {
		n += int64(len(b)) * 8
	}
	return n + int64(len(s.scal))*8
}

// newParamState allocates the buffers of a parameter, filling buffer i with init(i).
func newParamState(v *view, bufs []string, init func(i int) float64) *paramState {
	s := &paramState{name: v.name, dtype: v.dtype, shape: append([]int(nil), v.shape...), bufs: bufs}
	n := v.size()
	switch v.dtype {
	case tensor.Float32:
		s.b32 = make([][]float32, len(bufs))
		for i := range bufs {
			s.b32[i] = make([]float32, n)
			if x := init(i); x != 0 {
				fill(s.b32[i], float32(x))
			}
		}
	default:
		s.b64 = make([][]float64, len(bufs))
		for i := range bufs {
			s.b64[i] = make([]float64, n)
			if x := init(i); x != 0 {
				fill(s.b64[i], x)
			}
		}
	}
	return s
}

func fill[T Float](x []T, v T) {
	for i := range x {
		x[i] = v
	}
}

// checkMatches reports an error if v's shape or dtype differs from the state recorded under its name.
func (s *paramState) checkMatches(v *view) error {
	if s.dtype != v.dtype {
		return errors.Errorf("parameter %q changed dtype from %v to %v", v.name, s.dtype, v.dtype)
	}
	if !tensor.Shape(s.shape).Eq(v.shape) {
		return errors.Errorf("parameter %q changed shape from %v to %v", v.name, tensor.Shape(s.shape), v.shape)
	}
	return nil
}

// buffer returns buffer name of the state as a []float32 or []float64 (nil if absent).
func (s *paramState) buffer(name string) (f32 []float32, f64 []float64) {
	for i, b := range s.bufs {
		if b == name {
			if s.b32 != nil {
				return s.b32[i], nil
			}
			return nil, s.b64[i]
		}
	}
	return nil, nil
}

// registry holds the per-parameter state of a solver and resolves the parameters of each step.
type registry struct {
	states  map[string]*paramState
	order   []string // names in first-seen order, for deterministic saving
	seen    map[string]struct{}
	views   []view
	skipped int64
}

func (r *registry) init() {
	if r.states == nil {
		r.states = make(map[string]*paramState)
		r.seen = make(map[string]struct{})
	}
}

// resolve validates the parameters of a step and returns their views. Nothing is modified: every error
// (missing name, duplicate name, bad tensors, shape or dtype differing from the recorded state) is found
// here, before any weight or state is touched.
func (r *registry) resolve(params []G.ValueGrad) ([]view, error) {
	r.init()
	if cap(r.views) < len(params) {
		r.views = make([]view, len(params))
	}
	views := r.views[:len(params)]
	clear(r.seen)
	for i, p := range params {
		if p == nil {
			return nil, errors.Errorf("parameter %d is nil", i)
		}
		v := &views[i]
		if err := resolveView(p, v); err != nil {
			return nil, err
		}
		if _, dup := r.seen[v.name]; dup {
			return nil, errors.Errorf("parameter name %q appears twice in one step; name every parameter uniquely", v.name)
		}
		r.seen[v.name] = struct{}{}
		if s, ok := r.states[v.name]; ok {
			if err := s.checkMatches(v); err != nil {
				return nil, err
			}
		}
	}
	return views, nil
}

// screen applies the non-finite policy. It returns skip=true when the step must not be taken; with
// RefuseNonFinite it returns an error naming the parameter.
func (r *registry) screen(views []view, policy NonFinitePolicy) (skip bool, err error) {
	if policy == IgnoreNonFinite {
		return false, nil
	}
	for i := range views {
		if !views[i].gradFinite() {
			if policy == SkipNonFinite {
				for j := range views {
					views[j].zeroGrad()
				}
				r.skipped++
				return true, nil
			}
			return true, errors.Errorf("gradient of parameter %q is not finite; step refused, nothing changed", views[i].name)
		}
	}
	return false, nil
}

// state returns the state of v, creating it on first sight with the buffers bufs() names, buffer i
// filled with init(i).
func (r *registry) state(v *view, bufs func() []string, init func(i int) float64) *paramState {
	r.init()
	s, ok := r.states[v.name]
	if !ok {
		s = newParamState(v, bufs(), init)
		r.states[v.name] = s
		r.order = append(r.order, v.name)
	}
	return s
}

func (r *registry) bytes() int64 {
	var n int64
	for _, s := range r.states {
		n += s.bytes()
	}
	return n
}
