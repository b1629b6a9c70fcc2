package nn

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// CrossEntropyOption configures CrossEntropy.
type CrossEntropyOption func(*xentOp)

// WithIgnoreIndex excludes the rows whose target equals idx from the loss and from the mean (PyTorch's
// ignore_index, for padding). Without it every target must lie in [0, V).
func WithIgnoreIndex(idx int) CrossEntropyOption {
	return func(op *xentOp) { op.ignore, op.hasIgnore = idx, true }
}

// CrossEntropy is the mean softmax cross-entropy of logits (shape (..., V), the rows being all leading axes
// flattened, N of them) against integer targets (an Int vector node of length N — an input node that can be
// rebound with gorgonia.Let for every batch, or a constant):
//
//	loss = (1/N′) Σ_rows [logsumexp(z_row) − z_row[target_row]]
//
// where N′ counts the rows not ignored (WithIgnoreIndex); with every row ignored the loss and its gradient
// are 0. The maximum is subtracted before exponentiating (log-sum-exp), so large logits do not overflow.
// It is one custom op returning a scalar; its gradient is (softmax(z) − onehot(target))/N′ times the incoming
// gradient, with zero rows for ignored targets. float32 logits are reduced in float64. A target outside
// [0, V) is a run-time error.
func CrossEntropy(logits, targets *G.Node, opts ...CrossEntropyOption) (*G.Node, error) {
	if logits == nil || targets == nil {
		return nil, errors.New("nn.CrossEntropy: nil input")
	}
	if err := graphop.CheckFloat(logits.Dtype()); err != nil {
		return nil, errors.Wrap(err, "nn.CrossEntropy")
	}
	if logits.Dims() < 1 {
		return nil, errors.Errorf("nn.CrossEntropy: logits must be (..., V), got %v", logits.Shape())
	}
	if targets.Dtype() != tensor.Int || targets.Dims() != 1 {
		return nil, errors.Errorf("nn.CrossEntropy: targets must be an Int vector node, got %v %v", targets.Dtype(), targets.Shape())
	}
	V := logits.Shape()[logits.Dims()-1]
	if n := logits.Shape().TotalSize() / V; targets.Shape()[0] != n {
		return nil, errors.Errorf("nn.CrossEntropy: %d targets for %d rows of logits %v", targets.Shape()[0], n, logits.Shape())
	}
	op := &xentOp{dims: logits.Dims()}
	for _, o := range opts {
		o(op)
	}
	return G.ApplyOp(op, logits, targets)
}

// CrossEntropyInts is CrossEntropy with the targets given as a slice, held in a constant node (a new graph
// node per distinct slice; use CrossEntropy with an input node to reuse one graph across batches).
func CrossEntropyInts(logits *G.Node, targets []int, opts ...CrossEntropyOption) (*G.Node, error) {
	if logits == nil {
		return nil, errors.New("nn.CrossEntropy: nil input")
	}
	if len(targets) == 0 {
		return nil, errors.New("nn.CrossEntropy: no targets")
	}
	t := tensor.New(tensor.WithShape(len(targets)), tensor.WithBacking(append([]int(nil), targets...)))
	return CrossEntropy(logits, logits.Graph().Constant(t), opts...)
}

// xentOp: (logits (..., V), targets Int (N)) → scalar mean loss.
type xentOp struct {
	dims      int
	ignore    int
	hasIgnore bool
}

func (op *xentOp) Arity() int { return 2 }
func (op *xentOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(G.TensorType{Dims: op.dims, Of: a}, G.TensorType{Dims: 1, Of: tensor.Int}, a)
}
func (op *xentOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return tensor.ScalarShape(), nil }
func (op *xentOp) ReturnsPtr() bool                               { return false }
func (op *xentOp) CallsExtern() bool                              { return false }
func (op *xentOp) OverwritesInput() int                           { return -1 }
func (op *xentOp) WriteHash(h hash.Hash)                          { fmt.Fprint(h, op.String()) }
func (op *xentOp) Hashcode() uint32                               { return hashOf(op) }
func (op *xentOp) String() string {
	if op.hasIgnore {
		return fmt.Sprintf("CrossEntropy{dims=%d,ignore=%d}", op.dims, op.ignore)
	}
	return fmt.Sprintf("CrossEntropy{dims=%d}", op.dims)
}

func (op *xentOp) inputs(in []G.Value) (*tensor.Dense, []int, int, error) {
	if len(in) < 2 {
		return nil, nil, 0, errors.Errorf("%v: want logits and targets, got %d inputs", op, len(in))
	}
	x, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, nil, 0, errors.Wrapf(err, "%v logits", op)
	}
	if err := graphop.CheckFloat(x.Dtype()); err != nil {
		return nil, nil, 0, errors.Wrapf(err, "%v", op)
	}
	tt, ok := in[1].(*tensor.Dense)
	if !ok || tt.Dtype() != tensor.Int {
		return nil, nil, 0, errors.Errorf("%v: targets must be an Int tensor, got %T", op, in[1])
	}
	if tt.RequiresIterator() {
		tt = tt.Materialize().(*tensor.Dense)
	}
	V := x.Shape()[x.Dims()-1]
	tg := tt.Data().([]int)[:tt.Shape().TotalSize()]
	if len(tg)*V != x.Shape().TotalSize() {
		return nil, nil, 0, errors.Errorf("%v: %d targets for logits %v", op, len(tg), x.Shape())
	}
	for i, t := range tg {
		if (t < 0 || t >= V) && !(op.hasIgnore && t == op.ignore) {
			return nil, nil, 0, errors.Errorf("%v: target %d of row %d outside [0, %d)", op, t, i, V)
		}
	}
	return x, tg, V, nil
}

func (op *xentOp) Do(in ...G.Value) (G.Value, error) {
	x, tg, V, err := op.inputs(in)
	if err != nil {
		return nil, err
	}
	var loss float64
	switch x.Dtype() {
	case tensor.Float64:
		loss = xentForward(graphop.SliceOf[float64](x), tg, V, op)
		return G.NewF64(loss), nil
	default:
		loss = xentForward(graphop.SliceOf[float32](x), tg, V, op)
		return G.NewF32(float32(loss)), nil
	}
}

func (op *xentOp) skip(t int) bool { return op.hasIgnore && t == op.ignore }

func (op *xentOp) count(tg []int) int {
	n := 0
	for _, t := range tg {
		if !op.skip(t) {
			n++
		}
	}
	return n
}

// rowMax returns the largest entry of z (NaNs are skipped here and propagate through the exponentials).
func rowMax[T float](z []T) float64 {
	m := z[0]
	for _, v := range z[1:] {
		if v > m {
			m = v
		}
	}
	return float64(m)
}

// logSumExp returns log Σ exp(z) computed as max + log Σ exp(z − max).
func logSumExp[T float](z []T) float64 {
	m := rowMax(z)
	if math.IsInf(m, 0) {
		return m
	}
	var s float64
	for _, v := range z {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

func xentForward[T float](x []T, tg []int, V int, op *xentOp) float64 {
	n := op.count(tg)
	if n == 0 {
		return 0
	}
	rows := len(tg)
	parts := make([]float64, chunks(rows, V))
	parallelRows(rows, V, func(c, lo, hi int) {
		var s float64
		for r := lo; r < hi; r++ {
			if op.skip(tg[r]) {
				continue
			}
			z := x[r*V : (r+1)*V]
			s += logSumExp(z) - float64(z[tg[r]])
		}
		parts[c] = s
	})
	var s float64
	for _, p := range parts {
		s += p
	}
	return s / float64(n)
}

func (op *xentOp) DiffWRT(int) []bool { return []bool{true, false} }

func (op *xentOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	dz, err := G.ApplyOp(&xentGradOp{*op}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dz, nil}, nil
}

func (op *xentOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	v, err := (&xentGradOp{*op}).Do(in[0].Value(), in[1].Value(), dy)
	if err != nil {
		return err
	}
	return graphop.AddInto(in[0], v.(*tensor.Dense))
}

// xentGradOp: (logits, targets, dloss) → dlogits = dloss·(softmax − onehot)/N′.
type xentGradOp struct{ p xentOp }

func (op *xentGradOp) Arity() int           { return 3 }
func (op *xentGradOp) ReturnsPtr() bool     { return false }
func (op *xentGradOp) CallsExtern() bool    { return false }
func (op *xentGradOp) OverwritesInput() int { return -1 }
func (op *xentGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	x := G.TensorType{Dims: op.p.dims, Of: a}
	return hm.NewFnType(x, G.TensorType{Dims: 1, Of: tensor.Int}, a, x)
}
func (op *xentGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (op *xentGradOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *xentGradOp) Hashcode() uint32      { return hashOf(op) }
func (op *xentGradOp) String() string        { return "Grad" + op.p.String() }

func (op *xentGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *xentGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 3 {
		return nil, errors.Errorf("%v: want 3 inputs, got %d", op, len(in))
	}
	x, tg, V, err := op.p.inputs(in)
	if err != nil {
		return nil, err
	}
	dl, err := scalarOf(in[2])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	out := graphop.Reuse(prealloc, x.Dtype(), x.Shape(), in...)
	switch x.Dtype() {
	case tensor.Float64:
		xentBackward(graphop.SliceOf[float64](x), tg, V, dl, graphop.SliceOf[float64](out), &op.p)
	default:
		xentBackward(graphop.SliceOf[float32](x), tg, V, dl, graphop.SliceOf[float32](out), &op.p)
	}
	return out, nil
}

func xentBackward[T float](x []T, tg []int, V int, dl float64, out []T, op *xentOp) {
	n := op.count(tg)
	scale := 0.0
	if n > 0 {
		scale = dl / float64(n)
	}
	parallelRows(len(tg), V, func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			z, o := x[r*V:(r+1)*V], out[r*V:(r+1)*V]
			if op.skip(tg[r]) || n == 0 {
				clear(o)
				continue
			}
			// one pass of exponentials: o = exp(z − max), then o·scale/Σ, minus scale at the target
			m, t := rowMax(z), tg[r]
			if math.IsInf(m, 0) {
				lse := logSumExp(z)
				for j, v := range z {
					o[j] = T(math.Exp(float64(v)-lse) * scale)
				}
			} else {
				var sum float64
				for j, v := range z {
					e := math.Exp(float64(v) - m)
					o[j] = T(e)
					sum += e
				}
				k := T(scale / sum)
				for j := range o {
					o[j] *= k
				}
			}
			o[t] -= T(scale)
		}
	})
}
