package moe

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

// rowLogSumExp returns logsumexp over the last axis of a (T, N) node, (T). Gorgonia v0.9.18's LogSumExp is
// not usable here (it computes log(Σ exp(z − max) + max) and does not broadcast the max over rows), so this
// is one op, stabilised by the row maximum, with the gradient dz = softmax(z)·dy.
func rowLogSumExp(z *G.Node) (*G.Node, error) {
	if z == nil || z.Dims() != 2 {
		return nil, errors.New("moe: logsumexp wants a (T, N) node")
	}
	if err := graphop.CheckFloat(z.Dtype()); err != nil {
		return nil, err
	}
	return G.ApplyOp(&lseOp{t: z.Shape()[0], n: z.Shape()[1]}, z)
}

// lseOp: z (T,N) → (T); with grad set, (z, dy) → dz (T,N).
type lseOp struct {
	t, n int
	grad bool
}

func (op *lseOp) Arity() int {
	if op.grad {
		return 2
	}
	return 1
}
func (op *lseOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	m, v := G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 1, Of: a}
	if op.grad {
		return hm.NewFnType(m, v, m)
	}
	return hm.NewFnType(m, v)
}
func (op *lseOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if op.grad {
		return tensor.Shape{op.t, op.n}, nil
	}
	return tensor.Shape{op.t}, nil
}
func (op *lseOp) ReturnsPtr() bool      { return false }
func (op *lseOp) CallsExtern() bool     { return false }
func (op *lseOp) OverwritesInput() int  { return -1 }
func (op *lseOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *lseOp) Hashcode() uint32      { return hashOf(op) }
func (op *lseOp) String() string {
	if op.grad {
		return fmt.Sprintf("MoELogSumExpGrad{%d×%d}", op.t, op.n)
	}
	return fmt.Sprintf("MoELogSumExp{%d×%d}", op.t, op.n)
}

func (op *lseOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *lseOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: want %d inputs, got %d", op, op.Arity(), len(in))
	}
	z, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if z.Shape().TotalSize() != op.t*op.n {
		return nil, errors.Errorf("%v: input shape %v", op, z.Shape())
	}
	var dy *tensor.Dense
	shape := tensor.Shape{op.t}
	if op.grad {
		if dy, err = graphop.DenseOf(in[1]); err != nil {
			return nil, errors.Wrapf(err, "%v", op)
		}
		if dy.Shape().TotalSize() != op.t || dy.Dtype() != z.Dtype() {
			return nil, errors.Errorf("%v: bad dy %v %v", op, dy.Dtype(), dy.Shape())
		}
		shape = tensor.Shape{op.t, op.n}
	}
	out := graphop.Reuse(prealloc, z.Dtype(), shape, in...)
	switch z.Dtype() {
	case tensor.Float64:
		var d []float64
		if dy != nil {
			d = graphop.SliceOf[float64](dy)
		}
		lseKernel(graphop.SliceOf[float64](z), d, graphop.SliceOf[float64](out), op.t, op.n)
	case tensor.Float32:
		var d []float32
		if dy != nil {
			d = graphop.SliceOf[float32](dy)
		}
		lseKernel(graphop.SliceOf[float32](z), d, graphop.SliceOf[float32](out), op.t, op.n)
	default:
		return nil, errors.Errorf("%v: dtype %v not supported", op, z.Dtype())
	}
	return out, nil
}

// lseKernel writes logsumexp of each row of z into out, or, with dy, softmax(z)·dy into out (t×n).
func lseKernel[T float](z, dy, out []T, t, n int) {
	for r := 0; r < t; r++ {
		row := z[r*n : (r+1)*n]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, float64(v))
		}
		s := 0.0
		for _, v := range row {
			s += math.Exp(float64(v) - m)
		}
		if dy == nil {
			out[r] = T(m + math.Log(s))
			continue
		}
		g := float64(dy[r]) / s
		for c, v := range row {
			out[r*n+c] = T(math.Exp(float64(v)-m) * g)
		}
	}
}

func (op *lseOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	if !op.grad && n > 0 {
		d[0] = true
	}
	return d
}

func (op *lseOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.grad {
		return nil, errors.New("moe: second derivative of logsumexp not implemented")
	}
	dz, err := G.ApplyOp(&lseOp{t: op.t, n: op.n, grad: true}, in[0], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dz}, nil
}

func (op *lseOp) DoDiff(_ G.ExecutionContext, in G.Nodes, out *G.Node) error {
	if op.grad {
		return errors.New("moe: second derivative of logsumexp not implemented")
	}
	dy, err := out.Grad()
	if err != nil {
		return err
	}
	v, err := (&lseOp{t: op.t, n: op.n, grad: true}).Do(in[0].Value(), dy)
	if err != nil {
		return err
	}
	d := v.(*tensor.Dense)
	if d.Dtype() == tensor.Float64 {
		return addInto(in[0], graphop.SliceOf[float64](d), nil)
	}
	return addInto(in[0], nil, graphop.SliceOf[float32](d))
}
