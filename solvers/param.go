package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Float is the set of element types every gradlab kernel is written for.
type Float interface{ ~float32 | ~float64 }

// Param is a named parameter tensor with its gradient. It satisfies gorgonia.ValueGrad and gorgonia.Namer,
// so it can be handed to any gradlab solver (or Gorgonia's) without building a graph: tests, zeroth-order
// estimators and hand-written models use it. Graph nodes (*gorgonia.Node) work directly as well.
type Param struct {
	name  string
	value *tensor.Dense
	grad  *tensor.Dense
}

// NewParam wraps value and grad under name. grad may be nil, in which case a zero gradient of value's
// shape and dtype is allocated.
func NewParam(name string, value, grad *tensor.Dense) *Param {
	if grad == nil {
		grad = tensor.New(tensor.WithShape(value.Shape().Clone()...), tensor.Of(value.Dtype()))
	}
	return &Param{name: name, value: value, grad: grad}
}

// NewParamFrom builds a Param named name with the given shape whose value is a copy of init (a
// []float32 or []float64) and whose gradient is zero.
func NewParamFrom(name string, shape []int, init interface{}) *Param {
	var v *tensor.Dense
	switch d := init.(type) {
	case []float32:
		v = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float32(nil), d...)))
	case []float64:
		v = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), d...)))
	default:
		panic(errors.Errorf("solvers.NewParamFrom: unsupported init type %T", init))
	}
	return NewParam(name, v, nil)
}

// Name returns the parameter's name, the key of its optimizer state.
func (p *Param) Name() string { return p.name }

// Value returns the parameter tensor.
func (p *Param) Value() G.Value { return p.value }

// Grad returns the gradient tensor.
func (p *Param) Grad() (G.Value, error) { return p.grad, nil }

// Tensor returns the parameter tensor as a *tensor.Dense.
func (p *Param) Tensor() *tensor.Dense { return p.value }

// GradTensor returns the gradient tensor as a *tensor.Dense.
func (p *Param) GradTensor() *tensor.Dense { return p.grad }

// Params converts a slice of *Param to the []gorgonia.ValueGrad a Solver takes.
func Params(ps ...*Param) []G.ValueGrad {
	out := make([]G.ValueGrad, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}

// view is one parameter resolved for a step: its name, its tensors and typed access to their data.
type view struct {
	name  string
	w, g  *tensor.Dense
	dtype tensor.Dtype
	shape tensor.Shape
	w32   []float32
	g32   []float32
	w64   []float64
	g64   []float64
}

func (v *view) size() int { return v.shape.TotalSize() }

// nameOf returns the state key of a ValueGrad: its Name() if it has one.
func nameOf(vg G.ValueGrad) (string, error) {
	if n, ok := vg.(G.Namer); ok {
		name := n.Name()
		if name == "" {
			return "", errors.New("parameter has an empty name")
		}
		return name, nil
	}
	return "", errors.Errorf("parameter of type %T has no Name(): gradlab keys optimizer state by name (wrap it in a *solvers.Param)", vg)
}

// resolveView fills v from vg, checking that value and gradient are dense float tensors of one shape and dtype.
func resolveView(vg G.ValueGrad, v *view) error {
	name, err := nameOf(vg)
	if err != nil {
		return err
	}
	v.name = name
	w, ok := vg.Value().(*tensor.Dense)
	if !ok || w == nil {
		return errors.Errorf("parameter %q: value is %T, want a *tensor.Dense (scalars are not supported as parameters)", name, vg.Value())
	}
	gv, err := vg.Grad()
	if err != nil {
		return errors.Wrapf(err, "parameter %q has no gradient", name)
	}
	g, ok := gv.(*tensor.Dense)
	if !ok || g == nil {
		return errors.Errorf("parameter %q: gradient is %T, want a *tensor.Dense", name, gv)
	}
	if w.IsMaterializable() || g.IsMaterializable() {
		return errors.Errorf("parameter %q: value or gradient is a view or transposed tensor; solvers need contiguous tensors", name)
	}
	if w.Dtype() != g.Dtype() {
		return errors.Errorf("parameter %q: value dtype %v differs from gradient dtype %v", name, w.Dtype(), g.Dtype())
	}
	if !w.Shape().Eq(g.Shape()) {
		return errors.Errorf("parameter %q: value shape %v differs from gradient shape %v", name, w.Shape(), g.Shape())
	}
	v.w, v.g, v.dtype, v.shape = w, g, w.Dtype(), w.Shape()
	v.w32, v.g32, v.w64, v.g64 = nil, nil, nil, nil
	switch w.Dtype() {
	case tensor.Float32:
		v.w32, v.g32 = w.Float32s(), g.Float32s()
		if len(v.w32) != v.shape.TotalSize() || len(v.g32) != len(v.w32) {
			return errors.Errorf("parameter %q: backing array length does not match shape %v", name, v.shape)
		}
	case tensor.Float64:
		v.w64, v.g64 = w.Float64s(), g.Float64s()
		if len(v.w64) != v.shape.TotalSize() || len(v.g64) != len(v.w64) {
			return errors.Errorf("parameter %q: backing array length does not match shape %v", name, v.shape)
		}
	default:
		return errors.Errorf("parameter %q: dtype %v is not supported (float32 and float64 are)", name, w.Dtype())
	}
	return nil
}

// allFinite reports whether every element of x is finite. It relies on x*0 being 0 for finite x and NaN
// otherwise, which keeps the loop branch-free.
func allFinite[T Float](x []T) bool {
	var acc T
	for _, e := range x {
		acc += e * 0
	}
	return acc == 0
}

// gradFinite reports whether v's gradient is finite.
func (v *view) gradFinite() bool {
	if v.g32 != nil {
		return allFinite(v.g32)
	}
	return allFinite(v.g64)
}

// zeroGrad zeroes v's gradient.
func (v *view) zeroGrad() {
	if v.g32 != nil {
		clear(v.g32)
	} else {
		clear(v.g64)
	}
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
