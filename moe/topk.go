package moe

import (
	"fmt"
	"hash"
	"math"
	"sort"
	"sync"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/internal/graphop"
)

// TopK returns the (T, E) 0/1 selection mask of the k largest entries of each row of scores + bias, in the
// dtype of scores: DeepSeek-V3's routing, where bias is the auxiliary-loss-free balancing bias b (Wang et al.,
// "Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts", 2024) that only affects which experts
// are chosen, never the gates (deepseek-ai/DeepSeek-V3 inference/model.py, Gate.forward: the weights are
// gathered from the unbiased scores). Pass a zero bias for plain top-k (Switch, Mixtral, DeepSeek-V2).
//
// The op is not differentiable (the selection is piecewise constant): it implements SDOp with DiffWRT all
// false, so gradients reach the router only through the gates built from the mask (gates = mask ⊙ s). Ties
// go to the lower expert index. Its parameters (k and the grouping) are part of its hash, so TopK(s, b, 2)
// and TopK(s, b, 4) stay distinct nodes.
func TopK(scores, bias *G.Node, k int) (*G.Node, error) {
	return TopKGrouped(scores, bias, k, 1, 1)
}

// TopKGrouped is TopK with DeepSeek-V3's group-limited routing (node-limited in training): the E experts are
// split into groups contiguous groups, each group is scored by the sum of its two largest biased scores
// (its largest when a group holds one expert), only the topkGroups best groups stay eligible, and the k
// experts are chosen among them. groups = 1 is plain top-k.
func TopKGrouped(scores, bias *G.Node, k, groups, topkGroups int) (*G.Node, error) {
	return topKNode(scores, bias, &topKOp{k: k, groups: groups, topkGroups: topkGroups})
}

func topKNode(scores, bias *G.Node, op *topKOp) (*G.Node, error) {
	if scores == nil || bias == nil {
		return nil, errors.New("moe.TopK: nil input")
	}
	if scores.Dims() != 2 || bias.Dims() != 1 || bias.Shape()[0] != scores.Shape()[1] {
		return nil, errors.Errorf("moe.TopK: want scores (T, E) and bias (E), got %v and %v", scores.Shape(), bias.Shape())
	}
	if err := graphop.CheckFloat(scores.Dtype()); err != nil {
		return nil, errors.Wrap(err, "moe.TopK")
	}
	if bias.Dtype() != scores.Dtype() {
		return nil, errors.Errorf("moe.TopK: bias dtype %v differs from scores %v", bias.Dtype(), scores.Dtype())
	}
	e := scores.Shape()[1]
	if op.groups < 1 || e%op.groups != 0 || op.topkGroups < 1 || op.topkGroups > op.groups {
		return nil, errors.Errorf("moe.TopK: bad grouping: %d experts, %d groups, %d selected groups", e, op.groups, op.topkGroups)
	}
	if op.k < 1 || op.k > op.topkGroups*(e/op.groups) {
		return nil, errors.Errorf("moe.TopK: k = %d out of range for %d eligible experts", op.k, op.topkGroups*(e/op.groups))
	}
	return G.ApplyOp(op, scores, bias)
}

// topKOp: (scores (T,E), bias (E)) → mask (T,E). rec, if set, is told every selection (not hashed: it is
// bookkeeping, not a parameter of the function).
type topKOp struct {
	k, groups, topkGroups int
	rec                   *recorder
}

func (op *topKOp) Arity() int { return 2 }
func (op *topKOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 1, Of: a}, G.TensorType{Dims: 2, Of: a})
}
func (op *topKOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (op *topKOp) ReturnsPtr() bool     { return false }
func (op *topKOp) CallsExtern() bool    { return false }
func (op *topKOp) OverwritesInput() int { return -1 }
func (op *topKOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "MoETopK{k=%d,groups=%d,topkGroups=%d}", op.k, op.groups, op.topkGroups)
}
func (op *topKOp) Hashcode() uint32 { return hashOf(op) }
func (op *topKOp) String() string {
	if op.groups > 1 {
		return fmt.Sprintf("TopK{%d, groups %d/%d}", op.k, op.topkGroups, op.groups)
	}
	return fmt.Sprintf("TopK{%d}", op.k)
}

func (op *topKOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *topKOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("%v: want 2 inputs, got %d", op, len(in))
	}
	s, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	b, err := graphop.DenseOf(in[1])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if s.Dims() != 2 || b.Shape().TotalSize() != s.Shape()[1] || b.Dtype() != s.Dtype() {
		return nil, errors.Errorf("%v: bad inputs %v %v and %v %v", op, s.Dtype(), s.Shape(), b.Dtype(), b.Shape())
	}
	t, e := s.Shape()[0], s.Shape()[1]
	out := graphop.Reuse(prealloc, s.Dtype(), s.Shape(), in...)
	sel := make([]int32, t*op.k)
	switch s.Dtype() {
	case tensor.Float64:
		selectTopK(graphop.SliceOf[float64](s), graphop.SliceOf[float64](b), t, e, op.k, op.groups, op.topkGroups, sel)
		writeMask(graphop.SliceOf[float64](out), sel, e, op.k)
	case tensor.Float32:
		selectTopK(graphop.SliceOf[float32](s), graphop.SliceOf[float32](b), t, e, op.k, op.groups, op.topkGroups, sel)
		writeMask(graphop.SliceOf[float32](out), sel, e, op.k)
	default:
		return nil, errors.Errorf("%v: dtype %v not supported", op, s.Dtype())
	}
	if op.rec != nil {
		op.rec.selected(t, e, sel)
	}
	return out, nil
}

func (op *topKOp) DiffWRT(n int) []bool { return make([]bool, n) }

func (op *topKOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) { return nil, nil }

func (op *topKOp) DoDiff(G.ExecutionContext, G.Nodes, *G.Node) error { return nil }

// selectTopK writes, for each of the t rows, the k chosen expert indices (in decreasing biased score) into
// sel[row*k:(row+1)*k].
func selectTopK[T float](s, b []T, t, e, k, groups, topkGroups int, sel []int32) {
	v := make([]float64, e)
	ok := make([]bool, e)
	gs := e / groups
	gscore := make([]float64, groups)
	gok := make([]bool, groups)
	for r := 0; r < t; r++ {
		row := s[r*e : (r+1)*e]
		for j := range v {
			v[j] = float64(row[j]) + float64(b[j])
			ok[j] = true
		}
		if groups > 1 {
			for gi := 0; gi < groups; gi++ {
				m1, m2 := negInf, negInf
				for _, x := range v[gi*gs : (gi+1)*gs] {
					if x > m1 {
						m1, m2 = x, m1
					} else if x > m2 {
						m2 = x
					}
				}
				if gs > 1 {
					m1 += m2
				}
				gscore[gi] = m1
				gok[gi] = false
			}
			for n := 0; n < topkGroups; n++ {
				best := -1
				for gi := range gscore {
					if !gok[gi] && (best < 0 || gscore[gi] > gscore[best]) {
						best = gi
					}
				}
				gok[best] = true
			}
			for j := range ok {
				ok[j] = gok[j/gs]
			}
		}
		for n := 0; n < k; n++ {
			best := -1
			for j := range v {
				if ok[j] && (best < 0 || v[j] > v[best]) {
					best = j
				}
			}
			ok[best] = false
			sel[r*k+n] = int32(best)
		}
	}
}

// SelectTopK returns, for one token, the k experts with the largest biased scores s + b in decreasing
// order (ties to the lower index), restricted to the topkGroups best of groups contiguous groups: the
// selection TopKGrouped makes inside the graph, for routing outside it (cached decoding).
func SelectTopK(s, b []float64, k, groups, topkGroups int) []int {
	sel32 := make([]int32, k)
	selectTopK(s, b, 1, len(s), k, groups, topkGroups, sel32)
	sel := make([]int, k)
	for i, j := range sel32 {
		sel[i] = int(j)
	}
	return sel
}

var negInf = math.Inf(-1)

func writeMask[T float](out []T, sel []int32, e, k int) {
	clear(out)
	for i, j := range sel {
		out[(i/k)*e+int(j)] = 1
	}
}

// Capacity returns the mask of the selected (token, expert) pairs that fit in a capacity of c tokens per
// expert (Switch Transformers; GShard): an expert chosen by more than c tokens keeps the c with the highest
// scores (DeepSeek-V2's token dropping drops the lowest affinity scores; ties keep the earlier token) and
// drops the rest, whose contribution is lost (the token rides the residual). mask is a (T, E) 0/1 selection
// (from TopK) and scores the (T, E) router scores. Non-differentiable, like TopK. CapacityFor gives C from
// a capacity factor.
func Capacity(mask, scores *G.Node, c int) (*G.Node, error) {
	return capacityNode(mask, scores, &capacityOp{c: c})
}

func capacityNode(mask, scores *G.Node, op *capacityOp) (*G.Node, error) {
	if mask == nil || scores == nil {
		return nil, errors.New("moe.Capacity: nil input")
	}
	if mask.Dims() != 2 || !mask.Shape().Eq(scores.Shape()) || mask.Dtype() != scores.Dtype() {
		return nil, errors.Errorf("moe.Capacity: want mask and scores of one (T, E) shape and dtype, got %v and %v", mask.Shape(), scores.Shape())
	}
	if op.c < 0 {
		return nil, errors.Errorf("moe.Capacity: negative capacity %d", op.c)
	}
	return G.ApplyOp(op, mask, scores)
}

// CapacityFor returns the expert capacity C = ⌈factor·T·k/E⌉ (Switch Transformers), at most T.
func CapacityFor(factor float64, tokens, k, experts int) int {
	c := int(math.Ceil(factor * float64(tokens*k) / float64(experts)))
	return min(max(c, 0), tokens)
}

type capacityOp struct {
	c   int
	rec *recorder
}

func (op *capacityOp) Arity() int { return 2 }
func (op *capacityOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 2, Of: a})
}
func (op *capacityOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (op *capacityOp) ReturnsPtr() bool      { return false }
func (op *capacityOp) CallsExtern() bool     { return false }
func (op *capacityOp) OverwritesInput() int  { return -1 }
func (op *capacityOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "MoECapacity{%d}", op.c) }
func (op *capacityOp) Hashcode() uint32      { return hashOf(op) }
func (op *capacityOp) String() string        { return fmt.Sprintf("Capacity{%d}", op.c) }

func (op *capacityOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }

func (op *capacityOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("%v: want 2 inputs, got %d", op, len(in))
	}
	m, err := graphop.DenseOf(in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	s, err := graphop.DenseOf(in[1])
	if err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if m.Dims() != 2 || !m.Shape().Eq(s.Shape()) || m.Dtype() != s.Dtype() {
		return nil, errors.Errorf("%v: bad inputs %v and %v", op, m.Shape(), s.Shape())
	}
	t, e := m.Shape()[0], m.Shape()[1]
	out := graphop.Reuse(prealloc, m.Dtype(), m.Shape(), in...)
	var kept []int
	switch m.Dtype() {
	case tensor.Float64:
		kept = applyCapacity(graphop.SliceOf[float64](m), graphop.SliceOf[float64](s), graphop.SliceOf[float64](out), t, e, op.c)
	case tensor.Float32:
		kept = applyCapacity(graphop.SliceOf[float32](m), graphop.SliceOf[float32](s), graphop.SliceOf[float32](out), t, e, op.c)
	default:
		return nil, errors.Errorf("%v: dtype %v not supported", op, m.Dtype())
	}
	if op.rec != nil {
		op.rec.keptCounts(kept)
	}
	return out, nil
}

func (op *capacityOp) DiffWRT(n int) []bool { return make([]bool, n) }

func (op *capacityOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) { return nil, nil }

func (op *capacityOp) DoDiff(G.ExecutionContext, G.Nodes, *G.Node) error { return nil }

// applyCapacity copies mask into out, dropping for each expert all but the c selected tokens of highest
// score; it returns the kept count per expert.
func applyCapacity[T float](mask, s, out []T, t, e, c int) []int {
	copy(out, mask)
	kept := make([]int, e)
	var toks []int
	for j := 0; j < e; j++ {
		toks = toks[:0]
		for r := 0; r < t; r++ {
			if mask[r*e+j] != 0 {
				toks = append(toks, r)
			}
		}
		if len(toks) > c {
			sort.SliceStable(toks, func(a, b int) bool { return s[toks[a]*e+j] > s[toks[b]*e+j] })
			for _, r := range toks[c:] {
				out[r*e+j] = 0
			}
			toks = toks[:c]
		}
		kept[j] = len(toks)
	}
	return kept
}

// recorder accumulates the routing decisions of one layer's TopK and Capacity ops, for Stats and the bias
// update.
type recorder struct {
	mu       sync.Mutex
	tokens   int   // tokens routed since the last reset
	load     []int // (token, expert) selections per expert since the last reset
	kept     []int // of which kept by the capacity limit (nil: no limit)
	lastLoad []int // the last forward pass alone
	lastKept []int
	lastT    int
}

func (r *recorder) selected(t, e int, sel []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.load) != e {
		r.load = make([]int, e)
	}
	r.lastLoad = make([]int, e)
	for _, j := range sel {
		r.lastLoad[j]++
		r.load[j]++
	}
	r.tokens += t
	r.lastT = t
}

func (r *recorder) keptCounts(kept []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.kept) != len(kept) {
		r.kept = make([]int, len(kept))
	}
	for j, v := range kept {
		r.kept[j] += v
	}
	r.lastKept = append([]int(nil), kept...)
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens = 0
	clear(r.load)
	clear(r.kept)
}
