"""The T-SQL semantic gate (issue 12): beyond parsing, what a SQL Server would reject at
compile or bind time, checked without one, on sqlfluff's parse tree.

1. Names resolve. The schema is what sql/mssql/migrations create (tables and their columns,
   ALTER TABLE ADD included; views and their output columns; procedures and their
   parameters; functions). Every table, view, column, procedure, procedure parameter and
   function named in sql/mssql/queries.sql and in the bodies of the procedures, functions and
   views of the migrations must exist there; every @variable must be declared (DECLARE or a
   parameter of the procedure). Column names are resolved through the aliases, table
   variables, CTEs and derived tables of the batch; an unqualified column must belong to one
   of the batch's sources.
2. Parameter counts match the Python. Each named query's ``?`` count (comments and literals
   included: an ODBC driver that counts markers sees them too) equals its parameter list, and
   every call site in mi_worker (``db.run("name", k=...)``, ``run_one``, found with ``ast``)
   passes every parameter the T-SQL binds, and nothing neither dialect binds.
3. No SQL Server 2016+ feature outside a version check: ISJSON, JSON_VALUE/QUERY/MODIFY,
   OPENJSON, STRING_AGG, STRING_SPLIT, TRIM, CONCAT_WS, DATEDIFF_BIG, TRANSLATE, GREATEST,
   LEAST, CREATE OR ALTER, DROP ... IF EXISTS, AT TIME ZONE as code; inside dynamic SQL (a
   string literal) only in a batch that checks compatibility_level.

The gate is tested too: each check fails on a mutated copy of the real SQL (a seeded defect
of each kind it claims to catch).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

from mi_worker.db.queries import parse as parse_queries

# One process parses the T-SQL once for every test of these modules (make test runs
# pytest-xdist with --dist loadgroup; parsing is the cost, the trees are cached per process).
pytestmark = pytest.mark.xdist_group("tsql")

ROOT = Path(__file__).resolve().parents[2]
MSSQL = ROOT / "sql" / "mssql"
MIGRATIONS = sorted((MSSQL / "migrations").glob("*.sql"))

# Objects SQL Server itself provides that the T-SQL uses.
SYSTEM_PROCEDURES = {"sp_getapplock", "sp_releaseapplock", "sp_sequence_get_range",
                     "sp_executesql"}
SYSTEM_TABLES = {"sys.databases", "sys.indexes", "sys.columns", "sys.index_columns",
                 "sys.objects", "sys.dm_tran_locks", "sys.database_permissions",
                 "sys.database_principals", "sys.database_role_members"}
# Names that look like columns to the parser but are not (OUTPUT's pseudo-tables, hints,
# datepart and type keywords parsed as identifiers in some positions).
NOT_COLUMNS = {"inserted", "deleted", "second", "millisecond", "minute", "hour", "day", "month",
               "year", "week", "maxrecursion", "nolock", "readpast", "updlock", "rowlock",
               "readcommittedlock", "serializable", "max", "n"}

NEWER_FUNCTIONS = {"isjson", "json_value", "json_query", "json_modify", "openjson",
                   "string_agg", "string_split", "trim", "concat_ws", "datediff_big",
                   "translate", "greatest", "least"}


@dataclass
class Schema:
    tables: Dict[str, Set[str]] = field(default_factory=dict)      # table or view -> columns
    procedures: Dict[str, List[str]] = field(default_factory=dict)  # name -> parameters
    functions: Set[str] = field(default_factory=set)
    sequences: Set[str] = field(default_factory=set)


# -- parsing ---------------------------------------------------------------------------------

@cache
def _linter():
    from sqlfluff.core import FluffConfig, Linter
    config = FluffConfig.from_path(
        str(MSSQL), overrides={"dialect": "tsql", "large_file_skip_byte_limit": 0})
    return Linter(config=config)


@lru_cache(maxsize=256)
def _tree(sql: str):
    parsed = _linter().parse_string(sql)
    assert parsed.tree is not None, "unparsable T-SQL"
    return parsed.tree


def _name(seg) -> str:
    """The last identifier of an object or table reference, lower case (dbo.x -> x)."""
    parts = [s.raw for s in seg.segments if s.is_type("naked_identifier", "quoted_identifier",
                                                      "function_name_identifier", "parameter")]
    return parts[-1].strip("[]").lower() if parts else seg.raw.lower()


def _qualified(seg) -> str:
    return "".join(s.raw for s in seg.segments if not s.is_whitespace).lower()


def _children(seg, *types) -> Iterator:
    for s in seg.segments:
        if s.is_type(*types):
            yield s


def _first(seg, *types):
    return next(_children(seg, *types), None)


def _select_columns(select) -> Set[str]:
    """Output column names of a SELECT: aliases, else a column reference's last name."""
    out: Set[str] = set()
    clause = _first(select, "select_clause")
    if clause is None:
        return out
    for el in _children(clause, "select_clause_element"):
        alias = _first(el, "alias_expression")
        if alias is not None:
            out.add(_name(alias))
            continue
        ref = _first(el, "column_reference")
        if ref is not None:
            out.add(_name(ref))
    return out


def build_schema(texts: List[str]) -> Schema:
    """The schema the migration texts create, in order."""
    schema = Schema()
    for text in texts:
        tree = _tree(text)
        for st in tree.recursive_crawl("create_table_statement"):
            ref = _first(st, "table_reference")
            cols = set()
            for br in _children(st, "bracketed"):
                cols |= {_name(c) for c in _children(br, "column_definition")}
            schema.tables.setdefault(_name(ref), set()).update(cols)
        for st in tree.recursive_crawl("alter_table_statement"):
            ref = _first(st, "table_reference")
            schema.tables.setdefault(_name(ref), set()).update(
                _name(c) for c in _children(st, "column_definition"))
        for st in tree.recursive_crawl("create_view_statement"):
            ref = _first(st, "object_reference", "table_reference")
            select = next(st.recursive_crawl("select_statement"), None)
            schema.tables[_name(ref)] = _select_columns(select) if select is not None else set()
        for st in tree.recursive_crawl("create_procedure_statement"):
            ref = _first(st, "object_reference")
            plist = _first(st, "procedure_parameter_list")
            params = [] if plist is None else [
                p.raw[1:].lower() for p in _children(plist, "parameter")]
            schema.procedures[_name(ref)] = params
        for st in tree.recursive_crawl("create_function_statement"):
            ref = _first(st, "object_reference", "function_name")
            schema.functions.add(_name(ref))
        for st in tree.recursive_crawl("create_sequence_statement"):
            schema.sequences.add(_name(_first(st, "object_reference")))
    return schema


@cache
def real_schema() -> Schema:
    """The migrations' schema, plus the version table create_migrations_table makes."""
    queries = parse_queries((MSSQL / "queries.sql").read_text(encoding="utf-8"))
    return build_schema([p.read_text(encoding="utf-8") for p in MIGRATIONS]
                        + [queries["create_migrations_table"].sql])


# -- 1. names resolve -------------------------------------------------------------------------

def _sources(scope, schema: Schema, tvars: Dict[str, Set[str]],
             ctes: Dict[str, Set[str]]) -> Tuple[Dict[str, Optional[Set[str]]], List[str]]:
    """alias/table name -> its columns (None: unknown, not checked); and unknown objects."""
    sources: Dict[str, Optional[Set[str]]] = {}
    unknown: List[str] = []

    def add(key: str, cols: Optional[Set[str]]) -> None:
        if key in sources and sources[key] is not None and cols is not None:
            sources[key] = sources[key] | cols  # one alias reused for the same table
        else:
            sources[key] = cols

    for el in scope.recursive_crawl("from_expression_element"):
        texpr = _first(el, "table_expression")
        if texpr is None:
            continue
        alias_seg = _first(el, "alias_expression")
        alias = _name(alias_seg) if alias_seg is not None else None
        ref = _first(texpr, "table_reference")
        if ref is not None:
            full, name = _qualified(ref), _name(ref)
            if name.startswith("@"):
                cols = tvars.get(name)
                if cols is None:
                    unknown.append(f"table variable {name}")
            elif full in SYSTEM_TABLES:
                cols = None
            elif name in ctes:
                cols = ctes[name]
            elif name in schema.tables:
                cols = schema.tables[name]
            else:
                unknown.append(f"table {full}")
                cols = None
            add(alias or name, cols)
            if alias:
                add(name, cols)
            continue
        sub = next(texpr.recursive_crawl("select_statement"), None)
        if sub is not None and alias:
            add(alias, _select_columns(sub))
    # UPDATE / INSERT / DELETE targets named directly (UPDATE dbo.t SET ...).
    for st in scope.recursive_crawl("update_statement", "insert_statement", "delete_statement"):
        ref = _first(st, "table_reference")
        if ref is None:
            continue
        name = _name(ref)
        if name.startswith("@"):
            if name not in tvars:
                unknown.append(f"table variable {name}")
            add(name, tvars.get(name))
        elif name in schema.tables:
            add(name, schema.tables[name])
        elif name not in sources and name not in ctes:
            unknown.append(f"table {_qualified(ref)}")
    return sources, unknown


def check_names(sql: str, schema: Schema, params: Tuple[str, ...] = (),
                proc_params: Tuple[str, ...] = ()) -> List[str]:
    """Every problem found in one batch (a named query, or a procedure/function/view body)."""
    tree = _tree(sql)
    problems: List[str] = []
    tvars: Dict[str, Set[str]] = {}
    declared: Set[str] = {"@" + p for p in proc_params}
    for d in tree.recursive_crawl("declare_segment"):
        names = [p.raw.lower() for p in _children(d, "parameter")]
        declared |= set(names)
        if _first(d, "keyword") is not None and any(k.raw.upper() == "TABLE"
                                                    for k in _children(d, "keyword")):
            cols = set()
            for br in _children(d, "bracketed"):
                cols |= {_name(c) for c in _children(br, "column_definition")}
            tvars[names[0]] = cols
    ctes: Dict[str, Set[str]] = {}
    for cte in tree.recursive_crawl("common_table_expression"):
        cname = _name(cte)
        collist = next(cte.recursive_crawl("cte_column_list"), None)
        if collist is not None:
            ctes[cname] = {s.raw.lower() for s in collist.recursive_crawl("naked_identifier")}
        else:
            sub = next(cte.recursive_crawl("select_statement"), None)
            ctes[cname] = _select_columns(sub) if sub is not None else set()

    sources, unknown = _sources(tree, schema, tvars, ctes)
    problems += [f"unknown {u}" for u in unknown]
    select_aliases = {_name(a) for a in tree.recursive_crawl("alias_expression")}
    all_columns: Set[str] = set()
    for cols in sources.values():
        all_columns |= cols or set()

    bind = {p.lower() for p in params}
    for ref in tree.recursive_crawl("column_reference"):
        parts = [s.raw.strip("[]").lower() for s in ref.segments
                 if s.is_type("naked_identifier", "quoted_identifier")]
        if not parts:
            continue
        if len(parts) == 1:
            col = parts[0]
            if col in bind or col in NOT_COLUMNS or col in select_aliases:
                continue
            if any(v is None for v in sources.values()):
                continue  # a source we cannot see into: do not guess
            if col not in all_columns:
                problems.append(f"column {col} belongs to none of the batch's sources")
            continue
        qual, col = parts[-2], parts[-1]
        if qual not in sources:
            if qual not in ("dbo", "sys") and qual not in NOT_COLUMNS:
                problems.append(f"unknown alias {qual} in {qual}.{col}")
            continue
        cols = sources[qual]
        if cols is not None and col not in cols:
            problems.append(f"column {qual}.{col} does not exist")

    # OUTPUT inserted.x / deleted.x: columns of the statement's target.
    for st in tree.recursive_crawl("update_statement", "insert_statement", "delete_statement"):
        out = _first(st, "output_clause")
        target = _first(st, "table_reference")
        if out is None or target is None:
            continue
        cols = sources.get(_name(target))
        segs = [s for s in out.segments if not s.is_whitespace]
        for a, dot, b in zip(segs, segs[1:], segs[2:]):
            if a.raw.lower() in ("inserted", "deleted") and dot.raw == "." and cols is not None:
                if b.raw.lower() not in cols:
                    problems.append(f"OUTPUT {a.raw}.{b.raw}: no such column")

    # Procedures and their parameters; functions. The names of EXEC's named arguments are
    # the callee's parameters, not variables of this batch.
    callee_names: Set[int] = set()
    for ex in tree.recursive_crawl("execute_script_statement"):
        segs = [s for s in ex.segments if not s.is_whitespace]
        ref = _first(ex, "object_reference")
        start = segs.index(ref) if ref is not None else 0
        for a, b in zip(segs[start:], segs[start + 1:]):
            if a.is_type("parameter") and b.is_type("comparison_operator"):
                callee_names.add(id(a))
    for ex in tree.recursive_crawl("execute_script_statement"):
        ref = _first(ex, "object_reference")
        if ref is None:
            continue
        proc = _name(ref)
        if proc in SYSTEM_PROCEDURES:
            continue
        if proc not in schema.procedures:
            problems.append(f"EXEC of unknown procedure {proc}")
            continue
        segs = [s for s in ex.segments if not s.is_whitespace]
        after = segs.index(ref)
        for a, b in zip(segs[after:], segs[after + 1:]):
            if a.is_type("parameter") and b.is_type("comparison_operator"):
                if a.raw[1:].lower() not in schema.procedures[proc]:
                    problems.append(f"{proc} has no parameter {a.raw}")
    for fn in tree.recursive_crawl("function_name"):
        if "." in fn.raw and _qualified(fn).startswith("dbo."):
            if _name(fn) not in schema.functions:
                problems.append(f"unknown function {fn.raw}")

    # Variables: declared before use (or parameters of the enclosing procedure).
    for seg in tree.recursive_crawl("parameter"):
        var = seg.raw.lower()
        if var.startswith("@@") or var in declared or var in tvars or id(seg) in callee_names:
            continue
        problems.append(f"variable {seg.raw} is not declared")
    # Stray :params the templater turned into identifiers are checked above (bind set).
    return sorted(set(problems))


def _substitute(sql: str, params: Tuple[str, ...]) -> str:
    """:name placeholders as NULL (what the driver binds), outside string literals."""
    names = sorted(set(params), key=len, reverse=True)
    if not names:
        return sql
    pattern = re.compile(r"(?<![:\w]):(" + "|".join(map(re.escape, names)) + r")\b")
    pieces = re.split(r"('(?:[^']|'')*')", sql)
    return "".join(p if i % 2 else pattern.sub("NULL", p) for i, p in enumerate(pieces))


def query_problems(queries_text: str, schema: Schema) -> Dict[str, List[str]]:
    found = {}
    for name, q in parse_queries(queries_text).items():
        problems = check_names(_substitute(q.sql, q.param_order), schema, ())
        if problems:
            found[name] = problems
    return found


def _routine_bodies(texts: List[str]) -> Iterator[Tuple[str, str, Tuple[str, ...]]]:
    """(object name, batch text, parameters) of every procedure, function and view."""
    for text in texts:
        tree = _tree(text)
        for st in tree.recursive_crawl("create_procedure_statement", "create_function_statement",
                                       "create_view_statement"):
            ref = _first(st, "object_reference", "function_name", "table_reference")
            params: Tuple[str, ...] = ()
            plist = _first(st, "procedure_parameter_list")
            if plist is not None:
                params = tuple(p.raw[1:].lower() for p in _children(plist, "parameter"))
            fplist = next(st.recursive_crawl("function_parameter_list"), None)
            if fplist is not None:
                params = tuple(p.raw[1:].lower() for p in fplist.recursive_crawl("parameter"))
            yield _name(ref), st.raw, params


def routine_problems(texts: List[str], schema: Schema) -> Dict[str, List[str]]:
    found = {}
    for name, body, params in _routine_bodies(texts):
        problems = check_names(body, schema, (), params)
        if problems:
            found[name] = problems
    return found


# -- 2. parameter counts ----------------------------------------------------------------------

def marker_problems(queries_text: str) -> List[str]:
    wrong = []
    for name, q in parse_queries(queries_text).items():
        n = q.qmark_sql.count("?")
        if n != len(q.param_order):
            wrong.append(f"{name}: {n} ? markers in the text, {len(q.param_order)} parameters "
                         "bound (a ? in a comment or literal is counted by the driver)")
    return wrong


@dataclass
class CallSite:
    where: str
    query: str
    kwargs: Optional[Set[str]]  # None: not resolvable statically


def _dict_keys(node: ast.AST) -> Optional[Set[str]]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
            and not node.args and all(k.arg for k in node.keywords):
        return {k.arg for k in node.keywords}
    if isinstance(node, ast.Dict) and all(isinstance(k, ast.Constant) for k in node.keys):
        return {k.value for k in node.keys}
    return None


def call_sites(package: Path) -> List[CallSite]:
    """db.run("name", k=...) / run_one(...) in the package; **dict(...) resolved within the
    enclosing function when it is a literal assignment."""
    sites: List[CallSite] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in [n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            assigned: Dict[str, Optional[Set[str]]] = {}
            for n in ast.walk(func):
                if isinstance(n, ast.Assign) and len(n.targets) == 1 \
                        and isinstance(n.targets[0], ast.Name):
                    assigned[n.targets[0].id] = _dict_keys(n.value)
            for n in ast.walk(func):
                if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                        and n.func.attr in ("run", "run_one") and n.args
                        and isinstance(n.args[0], ast.Constant)
                        and isinstance(n.args[0].value, str)):
                    continue
                keys: Optional[Set[str]] = set()
                for kw in n.keywords:
                    if kw.arg is None:
                        extra = (assigned.get(kw.value.id)
                                 if isinstance(kw.value, ast.Name) else _dict_keys(kw.value))
                        keys = None if extra is None or keys is None else keys | extra
                    elif keys is not None and kw.arg != "retry":
                        keys.add(kw.arg)
                sites.append(CallSite(f"{path.relative_to(ROOT)}:{n.lineno}",
                                      n.args[0].value, keys))
    return sites


def call_site_problems(queries_text: str, other_dialect_text: str,
                       sites: List[CallSite]) -> List[str]:
    ms, pg = parse_queries(queries_text), parse_queries(other_dialect_text)
    wrong = []
    for site in sites:
        q = ms.get(site.query)
        if q is None:
            wrong.append(f"{site.where}: no T-SQL query named {site.query}")
            continue
        if site.kwargs is None:
            continue
        need = set(q.param_order)
        missing = need - site.kwargs
        other = set(pg[site.query].param_order) if site.query in pg else set()
        extra = site.kwargs - need - other
        if missing:
            wrong.append(f"{site.where}: {site.query} binds {sorted(missing)} the call does not pass")
        if extra:
            wrong.append(f"{site.where}: {site.query} is passed {sorted(extra)} no dialect binds")
    return wrong


# -- 3. no 2016+ feature outside a version check -----------------------------------------------

def feature_problems(text: str, where: str) -> List[str]:
    """Newer-than-2012 syntax in one file (a migration, or one named query's batch)."""
    tree = _tree(text)
    wrong = []
    for fn in tree.recursive_crawl("function_name"):
        if _name(fn) in NEWER_FUNCTIONS:
            wrong.append(f"{where}: {fn.raw} needs SQL Server 2016+")
    words = [s for s in tree.raw_segments if not s.is_whitespace and not s.is_comment]
    raw = [s.raw.upper() for s in words]
    for i, w in enumerate(raw):
        if w == "CREATE" and raw[i + 1:i + 3] == ["OR", "ALTER"]:
            wrong.append(f"{where}: CREATE OR ALTER needs SQL Server 2016 SP1")
        if w == "DROP" and i + 3 < len(raw) and raw[i + 2:i + 4] == ["IF", "EXISTS"]:
            wrong.append(f"{where}: DROP ... IF EXISTS needs SQL Server 2016")
        if w == "AT" and raw[i + 1:i + 3] == ["TIME", "ZONE"]:
            wrong.append(f"{where}: AT TIME ZONE needs SQL Server 2016")
    gated = "compatibility_level" in text.lower()
    for lit in tree.recursive_crawl("quoted_literal"):
        inner = lit.raw.upper()
        for word in NEWER_FUNCTIONS | {"CREATE OR ALTER"}:
            if re.search(r"\b" + word.upper() + r"\s*\(" if word != "CREATE OR ALTER"
                         else r"CREATE\s+OR\s+ALTER", inner) and not gated:
                wrong.append(f"{where}: dynamic SQL uses {word} without a compatibility_level "
                             "check in the batch")
    return wrong


def all_feature_problems(migration_texts: Dict[str, str], queries_text: str) -> List[str]:
    wrong = []
    for where, text in migration_texts.items():
        wrong += feature_problems(text, where)
    for name, q in parse_queries(queries_text).items():
        wrong += feature_problems(_substitute(q.sql, q.param_order), f"queries.sql {name}")
    return wrong


# -- the gate on the real files ------------------------------------------------------------

def _queries_text() -> str:
    return (MSSQL / "queries.sql").read_text(encoding="utf-8")


def _pg_queries_text() -> str:
    return (ROOT / "sql" / "postgresql" / "queries.sql").read_text(encoding="utf-8")


def _migration_texts() -> Dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in MIGRATIONS}


def test_schema_is_read_from_the_migrations():
    s = real_schema()
    assert {"request_id", "status", "idempotency_key", "resolved_at"} <= \
        s.tables["medical_insurance_requests"]
    assert "his_refused" in s.tables["medical_insurance_interfaces"]  # ALTER TABLE ADD (005)
    assert {"result_status", "latency_ms", "response_data"} <= s.tables["v_medical_insurance_result"]
    assert s.procedures["sp_medical_insurance_call_v2"][:4] == [
        "interface_code", "input_data", "timeout", "retry_count"]
    assert "fn_mi_json_text" in s.functions


def test_queries_name_only_what_the_migrations_create():
    found = query_problems(_queries_text(), real_schema())
    assert not found, "\n".join(f"{k}: {v}" for k, v in found.items())


def test_procedure_bodies_name_only_what_the_migrations_create():
    found = routine_problems(list(_migration_texts().values()), real_schema())
    assert not found, "\n".join(f"{k}: {v}" for k, v in found.items())


def test_marker_count_equals_parameters():
    assert not marker_problems(_queries_text())


def test_call_sites_pass_what_each_query_binds():
    sites = call_sites(ROOT / "mi_worker")
    checked = [s for s in sites if s.kwargs is not None]
    assert len(checked) >= 40, f"only {len(checked)} call sites resolved: the scan is broken"
    wrong = call_site_problems(_queries_text(), _pg_queries_text(), sites)
    assert not wrong, "\n".join(wrong)


def test_no_2016_feature_outside_a_version_check():
    wrong = all_feature_problems(_migration_texts(), _queries_text())
    assert not wrong, "\n".join(wrong)


# -- the gate's own tests: a seeded defect of each kind fails it ------------------------------

def _mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"mutation anchor {old!r} is gone from the SQL"
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old,new,expect", [
    ("SELECT his_refused\nFROM dbo.medical_insurance_interfaces",
     "SELECT his_refusd\nFROM dbo.medical_insurance_interfaces", "his_refusd"),
    ("FROM dbo.medical_insurance_requests AS r WITH (UPDLOCK",
     "FROM dbo.medical_insurance_request AS r WITH (UPDLOCK", "medical_insurance_request"),
    ("r.status = N'PENDING'\n        AND r.next_attempt_at <= @now",
     "r.state = N'PENDING'\n        AND r.next_attempt_at <= @now", "r.state"),
    ("@poll_ms = @poll_ms,", "@poll_msec = @poll_ms,", "@poll_msec"),
    ("EXEC dbo.sp_medical_insurance_call_v2\n", "EXEC dbo.sp_medical_insurance_call_v3\n",
     "sp_medical_insurance_call_v3"),
    ("SET @first = CAST(@first_value AS BIGINT);", "SET @first = CAST(@first_val AS BIGINT);",
     "@first_val"),
    ("inserted.parent_request_id,", "inserted.parent_id,", "parent_id"),
])
def test_gate_catches_a_wrong_name_in_a_query(old, new, expect):
    found = query_problems(_mutate(_queries_text(), old, new), real_schema())
    assert any(expect in p for ps in found.values() for p in ps), found


def test_gate_catches_a_wrong_name_in_a_procedure():
    texts = _migration_texts()
    texts["005_his_hardening.sql"] = _mutate(
        texts["005_his_hardening.sql"], "FROM dbo.v_medical_insurance_result AS v\n",
        "FROM dbo.v_medical_insurance_results AS v\n")
    found = routine_problems(list(texts.values()), real_schema())
    assert "v_medical_insurance_results" in str(found.get("sp_medical_insurance_call_v2"))


def test_gate_catches_a_column_the_migrations_do_not_create():
    texts = _migration_texts()
    texts["005_his_hardening.sql"] = _mutate(
        texts["005_his_hardening.sql"],
        "ALTER TABLE dbo.medical_insurance_interfaces ADD his_refused NVARCHAR(200) NULL;",
        "ALTER TABLE dbo.medical_insurance_interfaces ADD his_refusal NVARCHAR(200) NULL;")
    schema = build_schema(list(texts.values()))
    found = query_problems(_queries_text(), schema)
    assert "his_refused" in str(found.get("his_refusal"))


def test_gate_catches_a_marker_in_a_comment():
    # Full-line comments are dropped before binding (mi_worker/db/queries.py); a trailing
    # one is sent to the driver.
    text = _mutate(_queries_text(), "SELECT his_refused\n", "SELECT his_refused -- really?\n")
    assert any("his_refusal" in w for w in marker_problems(text))


def test_gate_catches_a_parameter_the_python_does_not_pass():
    text = _mutate(_queries_text(), "DECLARE @interface_code VARCHAR(10) = :interface_code;\n"
                   "SELECT his_refused",
                   "DECLARE @interface_code VARCHAR(10) = :interface_code;\n"
                   "DECLARE @kind NVARCHAR(20) = :kind;\nSELECT his_refused")
    wrong = call_site_problems(text, _pg_queries_text(), call_sites(ROOT / "mi_worker"))
    assert any("his_refusal binds ['kind']" in w for w in wrong), wrong


def test_gate_catches_a_parameter_no_dialect_binds():
    sites = [CallSite("x.py:1", "his_refusal", {"interface_code", "stray"})]
    wrong = call_site_problems(_queries_text(), _pg_queries_text(), sites)
    assert wrong == ["x.py:1: his_refusal is passed ['stray'] no dialect binds"]


@pytest.mark.parametrize("old,new,expect", [
    ("SELECT his_refused\n", "SELECT STRING_AGG(his_refused, N',')\n", "STRING_AGG"),
    ("SELECT his_refused\n", "SELECT JSON_VALUE(his_refused, N'$.a')\n", "JSON_VALUE"),
    ("SELECT his_refused\n", "SELECT his_refused\n;EXEC (N'SELECT * FROM OPENJSON(N''[]'')');\n",
     "OPENJSON"),
])
def test_gate_catches_newer_features_in_queries(old, new, expect):
    wrong = all_feature_problems({}, _mutate(_queries_text(), old, new))
    assert any(expect.lower() in w.lower() for w in wrong), wrong


def test_gate_catches_newer_ddl_in_a_migration():
    text = _mutate(_migration_texts()["005_his_hardening.sql"],
                   "IF OBJECT_ID(N'dbo.sp_medical_insurance_call_v2', N'P') IS NULL\n"
                   "    EXEC (N'CREATE PROCEDURE dbo.sp_medical_insurance_call_v2 AS RETURN 0;');",
                   "DROP PROCEDURE IF EXISTS dbo.sp_medical_insurance_call_v2;")
    text = _mutate(text, "ALTER PROCEDURE dbo.sp_medical_insurance_call_v2",
                   "CREATE OR ALTER PROCEDURE dbo.sp_medical_insurance_call_v2")
    wrong = feature_problems(text, "005")
    assert any("DROP ... IF EXISTS" in w for w in wrong) and \
        any("CREATE OR ALTER" in w for w in wrong), wrong


def test_gate_allows_openjson_behind_the_compatibility_check():
    assert "OPENJSON" in parse_queries(_queries_text())["complete_batch"].sql
    assert not [w for w in all_feature_problems({}, _queries_text()) if "complete_batch" in w]


# -- D2: no migration drops what the HIS calls or reads ------------------------------------

# Dropping an object drops every GRANT on it: a HIS login with object-level EXECUTE / SELECT
# would get error 229 (SQL Server) or 42501 (PostgreSQL) right after `db upgrade`.
HIS_OBJECTS = {"sp_medical_insurance_call_v2", "sp_check_sdk_service_status",
               "v_medical_insurance_result", "sp_get_medical_insurance_monitor_data",
               "sp_check_medical_insurance_alerts"}


def dropped_his_objects(text: str) -> List[str]:
    """HIS objects a migration text drops (code only: comments and literals do not count)."""
    code = re.sub(r"--[^\n]*", "", text)
    code = re.sub(r"N?'(?:[^']|'')*'", "''", code)
    found = []
    for m in re.finditer(r"\bDROP\s+(PROCEDURE|PROC|VIEW|FUNCTION)\s+(?:IF\s+EXISTS\s+)?"
                         r"(?:\[?dbo\]?\.)?\[?(\w+)", code, re.I):
        if m.group(2).lower() in HIS_OBJECTS:
            found.append(f"DROP {m.group(1).upper()} {m.group(2)}")
    return found


def test_no_migration_drops_a_his_object():
    wrong = {}
    for dialect in ("mssql", "postgresql", "sqlite"):
        for path in sorted((ROOT / "sql" / dialect / "migrations").glob("*.sql")):
            drops = dropped_his_objects(path.read_text(encoding="utf-8"))
            if drops:
                wrong[f"{dialect}/{path.name}"] = drops
    assert not wrong, wrong


def test_gate_catches_a_drop_of_a_his_object():
    text = _migration_texts()["002_procedures.sql"]
    assert not dropped_his_objects(text)
    seeded = _mutate(text, "IF OBJECT_ID(N'dbo.sp_medical_insurance_call_v2', N'P') IS NULL\n",
                     "IF OBJECT_ID(N'dbo.sp_medical_insurance_call_v2', N'P') IS NOT NULL\n"
                     "    DROP PROCEDURE dbo.sp_medical_insurance_call_v2;\nGO\n"
                     "IF OBJECT_ID(N'dbo.sp_medical_insurance_call_v2', N'P') IS NULL\n")
    assert dropped_his_objects(seeded) == ["DROP PROCEDURE sp_medical_insurance_call_v2"]
    assert dropped_his_objects("DROP VIEW IF EXISTS v_medical_insurance_result;")
    assert not dropped_his_objects("-- DROP VIEW v_medical_insurance_result\nSELECT 1;")
