// The pickle format of a Program: a versioned tuple of the op names (so codes can be
// remapped when the table grows), the layout, the code and argument arrays as bytes, the
// constants, outputs and guards. Loading checks everything a replay relies on.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "bindings/function.hpp"

namespace py = pybind11;

namespace tapegrad::bind {
namespace {

constexpr int program_pickle_version = 1;

py::bytes raw(const void* p, std::size_t n) { return py::bytes(static_cast<const char*>(p), n); }

template <class T>
std::vector<T> unraw(const py::bytes& b, std::size_t count, const char* what) {
    const std::string s = b;
    if (s.size() != count * sizeof(T))
        throw py::value_error(std::string("corrupt Program pickle: bad ") + what + " size");
    std::vector<T> v(count);
    if (count) std::memcpy(v.data(), s.data(), s.size());
    return v;
}

}  // namespace

py::tuple program_state(const program& p) {
    py::list names;
    for (const auto& row : op_table) names.append(row.name);
    std::vector<std::uint8_t> codes(p.op_.size());
    for (std::size_t s = 0; s < codes.size(); ++s) codes[s] = std::uint8_t(p.op_[s]);
    py::list guards;
    for (const auto& g : p.guards_)
        guards.append(py::make_tuple(int(g.c), g.lhs, g.rhs, g.outcome, g.where));
    std::vector<double> init(p.n_slots(), 0.0);  // the format has one per slot
    std::copy(p.init_.begin(), p.init_.end(), init.begin());
    return py::make_tuple(
        program_pickle_version, names, p.n_inputs, p.first_op(), raw(codes.data(), codes.size()),
        raw(p.a_.data(), p.a_.size() * sizeof(slot)), raw(p.b_.data(), p.b_.size() * sizeof(slot)),
        raw(init.data(), init.size() * sizeof(double)), p.outputs_, guards);
}

namespace {
program program_from_checked_state(const py::tuple& st);
}  // namespace

// Rebuild a program from its pickled state, checking everything a replay relies on:
// a corrupt or hostile pickle raises ValueError instead of reading out of bounds.
program program_from_state(const py::tuple& st) {
    try {
        return program_from_checked_state(st);
    } catch (const py::cast_error&) {
        throw py::value_error("corrupt Program pickle: a field has the wrong type or range");
    } catch (const py::error_already_set& e) {
        if (e.matches(PyExc_TypeError) || e.matches(PyExc_OverflowError) ||
            e.matches(PyExc_IndexError))
            throw py::value_error(std::string("corrupt Program pickle: ") + e.what());
        throw;
    }
}

namespace {

program program_from_checked_state(const py::tuple& st) {
    if (st.size() < 1) throw py::value_error("corrupt Program pickle: empty state");
    const int version = st[0].cast<int>();
    if (version != program_pickle_version)
        throw py::value_error("unsupported Program pickle version " + std::to_string(version) +
                              "; this tapegrad reads version " +
                              std::to_string(program_pickle_version));
    if (st.size() != 10) throw py::value_error("corrupt Program pickle: wrong field count");
    std::unordered_map<std::string, op> by_name;
    for (int o = 0; o < int(op::count_); ++o) by_name[op_table[o].name] = op(o);
    std::vector<op> code_map;
    for (py::handle h : st[1].cast<py::list>()) {
        const auto name = h.cast<std::string>();
        auto it = by_name.find(name);
        if (it == by_name.end())
            throw py::value_error("Program pickle uses op '" + name +
                                  "', which this tapegrad does not have (saved by a newer "
                                  "version?)");
        code_map.push_back(it->second);
    }
    program p;
    p.n_inputs = st[2].cast<std::uint32_t>();
    const auto first_op = st[3].cast<std::uint32_t>();
    const std::string codes = st[4].cast<py::bytes>();
    const std::size_t n = codes.size();
    if (n >= tape::hard_max_nodes || p.n_inputs > first_op || first_op > n)
        throw py::value_error("corrupt Program pickle: bad layout");
    p.set_first_op(first_op);
    p.a_ = unraw<slot>(st[5].cast<py::bytes>(), n, "argument");
    p.b_ = unraw<slot>(st[6].cast<py::bytes>(), n, "argument");
    p.init_ = unraw<double>(st[7].cast<py::bytes>(), n, "constant");
    p.init_.resize(first_op);  // op slots' entries carry nothing
    p.op_.resize(n);
    for (std::size_t s = 0; s < n; ++s) {
        const auto c = std::uint8_t(codes[s]);
        if (c >= code_map.size()) throw py::value_error("corrupt Program pickle: bad op code");
        const op o = code_map[c];
        const op want = s < p.n_inputs ? op::leaf : s < first_op ? op::constant : o;
        const bool ok = s < first_op ? o == want : !is_leaf(o) && p.a_[s] < s && p.b_[s] < s;
        if (!ok) throw py::value_error("corrupt Program pickle: bad node " + std::to_string(s));
        p.op_[s] = o;
    }
    p.outputs_ = st[8].cast<std::vector<slot>>();
    for (slot s : p.outputs_)
        if (s >= n) throw py::value_error("corrupt Program pickle: bad output");
    for (py::handle h : st[9].cast<py::list>()) {
        auto t = h.cast<py::tuple>();
        const int c = t[0].cast<int>();
        const auto l = t[1].cast<slot>(), r = t[2].cast<slot>();
        if (c < 0 || c > int(cmp::same) || l >= n || r >= n)
            throw py::value_error("corrupt Program pickle: bad guard");
        p.guards_.push_back({cmp(c), l, r, t[3].cast<bool>(), t[4].cast<std::string>()});
    }
    p.finish();
    return p;
}

}  // namespace
}  // namespace tapegrad::bind
