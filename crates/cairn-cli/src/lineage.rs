//! `cairn lineage ENTITY`: the lineage graph around an entity (`LineageService.Graph`), drawn as
//! a Mermaid flowchart, a Graphviz digraph, JSON, or lines of text.
//!
//! The renderers are pure functions of the `GraphResponse`, so what a reader pastes into a
//! Markdown file or `dot -Tsvg` is tested as exact text. Titles are free text: each renderer
//! escapes what its syntax would otherwise read as syntax.

use std::collections::HashMap;

use cairn_grpc::proto;
use clap::{Args, ValueEnum};

use crate::enums::{name_of, parse_enum};
use crate::loop_client::LoopClient;
use crate::loop_flags::{ReadScope, parse_entity};
use crate::loop_output::{entity_name, json_array, json_optional, stamp_json, stamp_text};
use crate::output::{JsonObject, json_string};

/// How a graph is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid `flowchart LR` (renders in GitHub and GitLab Markdown).
    #[default]
    Mermaid,
    /// A Graphviz `digraph` (`dot -Tsvg`).
    Dot,
    /// One JSON object: nodes, edges and the stamp.
    Json,
    /// Lines for a person.
    Text,
}

/// `cairn lineage`.
#[derive(Debug, Args)]
pub struct LineageArgs {
    #[command(flatten)]
    scope: ReadScope,

    /// The entity, as KIND/ID (feedback/fb-1, opportunity/o-17, decision/d-3, ...).
    entity: String,

    /// Which way to walk: up (what it came from), down (what came of it) or both.
    #[arg(long, default_value = "both")]
    direction: String,

    /// Hops from the entity (0: 3; at most 16).
    #[arg(long, default_value_t = 0)]
    depth: u32,

    /// Most nodes (0: 200; at most 1000).
    #[arg(long, default_value_t = 0)]
    max_nodes: u32,

    /// Follow only this relation (evidence_for, decided_by, ...); repeat for several.
    #[arg(long = "relation", value_name = "RELATION")]
    relations: Vec<String>,

    /// How to draw it.
    #[arg(long, value_enum, default_value_t)]
    format: GraphFormat,
}

/// Parses `up`, `down` or `both` (or the proto's `upstream`, `downstream`).
pub fn parse_direction(text: &str) -> anyhow::Result<proto::LineageDirection> {
    match text {
        "up" => Ok(proto::LineageDirection::Upstream),
        "down" => Ok(proto::LineageDirection::Downstream),
        other => parse_enum::<proto::LineageDirection>("--direction", other),
    }
}

/// Fetches the graph and prints it.
pub async fn run(args: LineageArgs) -> anyhow::Result<()> {
    let root = parse_entity("ENTITY", &args.entity, None)?;
    let direction = parse_direction(&args.direction)?;
    let relations = args
        .relations
        .iter()
        .map(|relation| parse_enum::<proto::Relation>("--relation", relation).map(i32::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut client = LoopClient::connect(&args.scope.server).await?;
    let graph = client
        .graph(proto::GraphRequest {
            tenant: args.scope.tenant.clone(),
            read: Some(args.scope.options()),
            root: Some(root),
            direction: direction.into(),
            depth: args.depth,
            max_nodes: args.max_nodes,
            relations,
        })
        .await?;
    print!("{}", render(args.format, &graph));
    Ok(())
}

/// The graph drawn in `format`, ending with a newline.
pub fn render(format: GraphFormat, graph: &proto::GraphResponse) -> String {
    match format {
        GraphFormat::Mermaid => mermaid(graph),
        GraphFormat::Dot => dot(graph),
        GraphFormat::Json => format!("{}\n", graph_json(graph)),
        GraphFormat::Text => graph_text(graph),
    }
}

/// A node's status name (`planned`), or `None` for a signal.
pub fn summary_status(summary: &proto::EntitySummary) -> Option<String> {
    use proto::entity_summary::Status;
    Some(match summary.status? {
        Status::FeedbackStatus(value) => name_of::<proto::FeedbackStatus>(value),
        Status::OpportunityStatus(value) => name_of::<proto::OpportunityStatus>(value),
        Status::DecisionStatus(value) => name_of::<proto::DecisionStatus>(value),
        Status::InitiativeStatus(value) => name_of::<proto::InitiativeStatus>(value),
    })
}

fn node_entity(node: &proto::LineageNode) -> Option<&proto::EntityRef> {
    node.summary.as_ref()?.entity.as_ref()
}

/// The lines of a node's label: `kind id`, the title, the status (each only when known).
fn label_lines(node: &proto::LineageNode) -> Vec<String> {
    let summary = node.summary.clone().unwrap_or_default();
    let mut lines = vec![entity_name(summary.entity.as_ref()).replacen('/', " ", 1)];
    if !summary.title.is_empty() {
        lines.push(summary.title.clone());
    }
    if let Some(status) = summary_status(&summary) {
        lines.push(status);
    }
    lines
}

fn relation_name(edge: &proto::Edge) -> String {
    name_of::<proto::Relation>(edge.relation)
}

/// Mermaid node ids: `kind_id` with everything outside `[A-Za-z0-9_]` made `_`, and a `_2`,
/// `_3`, ... suffix when two entities would otherwise share one (`fb-1` and `fb_1`).
struct MermaidIds {
    by_entity: HashMap<String, String>,
    taken: HashMap<String, usize>,
}

impl MermaidIds {
    fn new() -> MermaidIds {
        MermaidIds {
            by_entity: HashMap::new(),
            taken: HashMap::new(),
        }
    }

    fn id(&mut self, entity: &str) -> String {
        if let Some(id) = self.by_entity.get(entity) {
            return id.clone();
        }
        let base: String = entity
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let count = self.taken.entry(base.clone()).or_insert(0);
        *count += 1;
        let id = if *count == 1 {
            base
        } else {
            format!("{base}_{count}")
        };
        self.by_entity.insert(entity.to_owned(), id.clone());
        id
    }
}

/// Escapes text for a quoted Mermaid label: quotes, `#` (entity codes start with it) and the
/// characters Mermaid would read as HTML become entity codes; line breaks become spaces.
fn mermaid_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '\n' | '\r' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

/// A Mermaid `flowchart LR`: one node per entity, edges labelled with their relation, the root
/// outlined, the stamp in a comment.
pub fn mermaid(graph: &proto::GraphResponse) -> String {
    let mut ids = MermaidIds::new();
    let mut out = String::from("flowchart LR\n");
    out.push_str(&format!("  %% {}\n", stamp_text(graph.stamp.as_ref())));
    if graph.truncated {
        out.push_str("  %% truncated: more nodes than --max-nodes\n");
    }
    for node in &graph.nodes {
        let id = ids.id(&entity_name(node_entity(node)));
        let label: Vec<String> = label_lines(node)
            .iter()
            .map(|line| mermaid_escape(line))
            .collect();
        out.push_str(&format!("  {id}[\"{}\"]\n", label.join("<br/>")));
    }
    for edge in &graph.edges {
        let from = ids.id(&entity_name(edge.from.as_ref()));
        let to = ids.id(&entity_name(edge.to.as_ref()));
        out.push_str(&format!("  {from} -->|{}| {to}\n", relation_name(edge)));
    }
    if let Some(root) = graph.nodes.first() {
        let id = ids.id(&entity_name(node_entity(root)));
        out.push_str("  classDef root stroke-width:3px\n");
        out.push_str(&format!("  class {id} root\n"));
    }
    out
}

/// Escapes text for a double-quoted DOT string: backslashes and quotes escaped, line breaks as
/// `\n` (which DOT draws as a centred line break).
fn dot_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            other => out.push(other),
        }
    }
    out
}

/// A Graphviz `digraph`: nodes named `kind/id`, boxes labelled like Mermaid's, the root drawn
/// bold, the stamp in a comment.
pub fn dot(graph: &proto::GraphResponse) -> String {
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n");
    out.push_str(&format!("  // {}\n", stamp_text(graph.stamp.as_ref())));
    if graph.truncated {
        out.push_str("  // truncated: more nodes than --max-nodes\n");
    }
    for (index, node) in graph.nodes.iter().enumerate() {
        let label: Vec<String> = label_lines(node)
            .iter()
            .map(|line| dot_escape(line))
            .collect();
        out.push_str(&format!(
            "  \"{}\" [label=\"{}\"{}];\n",
            dot_escape(&entity_name(node_entity(node))),
            label.join("\\n"),
            if index == 0 { ", penwidth=3" } else { "" }
        ));
    }
    for edge in &graph.edges {
        out.push_str(&format!(
            "  \"{}\" -> \"{}\" [label=\"{}\"];\n",
            dot_escape(&entity_name(edge.from.as_ref())),
            dot_escape(&entity_name(edge.to.as_ref())),
            relation_name(edge)
        ));
    }
    out.push_str("}\n");
    out
}

fn edge_json(edge: &proto::Edge) -> String {
    JsonObject::new()
        .string("from", &entity_name(edge.from.as_ref()))
        .string("relation", &relation_name(edge))
        .string("to", &entity_name(edge.to.as_ref()))
        .finish()
}

/// The graph as one JSON object: the root, nodes (with depth and the edge each was reached by),
/// edges, whether the walk was cut at the node limit, and the stamp.
pub fn graph_json(graph: &proto::GraphResponse) -> String {
    let nodes = graph.nodes.iter().map(|node| {
        let summary = node.summary.clone().unwrap_or_default();
        let entity = summary.entity.clone().unwrap_or_default();
        JsonObject::new()
            .string("entity", &entity_name(Some(&entity)))
            .string("kind", &name_of::<proto::EntityKind>(entity.kind))
            .string("id", &entity.id)
            .string("title", &summary.title)
            .raw("team", &json_optional(&summary.team))
            .raw(
                "status",
                &summary_status(&summary).map_or_else(|| "null".to_owned(), |s| json_string(&s)),
            )
            .number("depth", node.depth)
            .raw(
                "via",
                &node
                    .via
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), edge_json),
            )
            .finish()
    });
    JsonObject::new()
        .raw(
            "root",
            &graph.nodes.first().map_or_else(
                || "null".to_owned(),
                |root| json_string(&entity_name(node_entity(root))),
            ),
        )
        .raw("nodes", &json_array(nodes))
        .raw("edges", &json_array(graph.edges.iter().map(edge_json)))
        .number("truncated", graph.truncated)
        .raw("stamp", &stamp_json(graph.stamp.as_ref()))
        .finish()
}

/// The graph as lines: each node with its depth, title, status and the edge it was reached by,
/// then the edges, then the stamp.
pub fn graph_text(graph: &proto::GraphResponse) -> String {
    let mut out = String::new();
    for node in &graph.nodes {
        let summary = node.summary.clone().unwrap_or_default();
        let mut line = format!("  {} {}", node.depth, entity_name(summary.entity.as_ref()));
        if !summary.title.is_empty() {
            line.push_str(&format!(" {:?}", summary.title));
        }
        if let Some(status) = summary_status(&summary) {
            line.push_str(&format!(" {status}"));
        }
        if let Some(via) = &node.via {
            line.push_str(&format!(" (via {})", edge_text(via)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !graph.edges.is_empty() {
        out.push_str("edges\n");
        for edge in &graph.edges {
            out.push_str(&format!("  {}\n", edge_text(edge)));
        }
    }
    if graph.truncated {
        out.push_str("truncated: more nodes than --max-nodes\n");
    }
    out.push_str(&format!(
        "{} nodes, {}\n",
        graph.nodes.len(),
        stamp_text(graph.stamp.as_ref())
    ));
    out
}

/// `feedback/fb-1 -evidence_for-> opportunity/o-1`.
pub fn edge_text(edge: &proto::Edge) -> String {
    format!(
        "{} -{}-> {}",
        entity_name(edge.from.as_ref()),
        relation_name(edge),
        entity_name(edge.to.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(kind: proto::EntityKind, id: &str) -> proto::EntityRef {
        proto::EntityRef {
            kind: kind.into(),
            id: id.to_owned(),
        }
    }

    fn edge(
        from: proto::EntityRef,
        relation: proto::Relation,
        to: proto::EntityRef,
    ) -> proto::Edge {
        proto::Edge {
            from: Some(from),
            relation: relation.into(),
            to: Some(to),
        }
    }

    /// feedback fb-1 -> opportunity o-1 (a title with quotes and markup) -> decision d-1, and a
    /// signal (no status) with a dot in its id.
    fn small_graph() -> proto::GraphResponse {
        use proto::EntityKind::{Decision, Feedback, Opportunity, Signal};
        use proto::entity_summary::Status;
        let fb = entity(Feedback, "fb-1");
        let opp = entity(Opportunity, "o-1");
        let dec = entity(Decision, "d-1");
        let sig = entity(Signal, "fb.1");
        let evidence = edge(fb.clone(), proto::Relation::EvidenceFor, opp.clone());
        let decided = edge(opp.clone(), proto::Relation::DecidedBy, dec.clone());
        let signal = edge(sig.clone(), proto::Relation::EvidenceFor, opp.clone());
        let node = |entity: proto::EntityRef, title: &str, status, depth, via| proto::LineageNode {
            summary: Some(proto::EntitySummary {
                entity: Some(entity),
                title: title.to_owned(),
                team: "platform".to_owned(),
                status,
            }),
            depth,
            via,
        };
        proto::GraphResponse {
            nodes: vec![
                node(
                    fb,
                    "",
                    Some(Status::FeedbackStatus(
                        proto::FeedbackStatus::Processed.into(),
                    )),
                    0,
                    None,
                ),
                node(
                    opp,
                    r#"Speed up "CI" <fast> & #1 \o/"#,
                    Some(Status::OpportunityStatus(
                        proto::OpportunityStatus::Planned.into(),
                    )),
                    1,
                    Some(evidence.clone()),
                ),
                node(
                    dec,
                    "Plan o-1",
                    Some(Status::DecisionStatus(
                        proto::DecisionStatus::Accepted.into(),
                    )),
                    2,
                    Some(decided.clone()),
                ),
                node(sig, "build_latency_ms", None, 2, Some(signal.clone())),
            ],
            edges: vec![evidence, decided, signal],
            truncated: false,
            stamp: Some(proto::Stamp {
                position: 42,
                checkpoint: Some(proto::Checkpoint {
                    tree_size: 40,
                    root: vec![0x0f],
                    ..Default::default()
                }),
            }),
        }
    }

    #[test]
    fn mermaid_sanitises_ids_and_escapes_labels() {
        assert_eq!(
            mermaid(&small_graph()),
            r##"flowchart LR
  %% as of position 42, checkpoint tree size 40
  feedback_fb_1["feedback fb-1<br/>processed"]
  opportunity_o_1["opportunity o-1<br/>Speed up #quot;CI#quot; #lt;fast#gt; #amp; #35;1 \o/<br/>planned"]
  decision_d_1["decision d-1<br/>Plan o-1<br/>accepted"]
  signal_fb_1["signal fb.1<br/>build_latency_ms"]
  feedback_fb_1 -->|evidence_for| opportunity_o_1
  opportunity_o_1 -->|decided_by| decision_d_1
  signal_fb_1 -->|evidence_for| opportunity_o_1
  classDef root stroke-width:3px
  class feedback_fb_1 root
"##
        );
    }

    #[test]
    fn mermaid_ids_never_collide() {
        let mut ids = MermaidIds::new();
        assert_eq!(ids.id("feedback/fb-1"), "feedback_fb_1");
        assert_eq!(ids.id("feedback/fb_1"), "feedback_fb_1_2");
        assert_eq!(ids.id("feedback/fb.1"), "feedback_fb_1_3");
        assert_eq!(
            ids.id("feedback/fb-1"),
            "feedback_fb_1",
            "stable per entity"
        );
    }

    #[test]
    fn dot_quotes_and_escapes() {
        assert_eq!(
            dot(&small_graph()),
            r#"digraph lineage {
  rankdir=LR;
  node [shape=box];
  // as of position 42, checkpoint tree size 40
  "feedback/fb-1" [label="feedback fb-1\nprocessed", penwidth=3];
  "opportunity/o-1" [label="opportunity o-1\nSpeed up \"CI\" <fast> & #1 \\o/\nplanned"];
  "decision/d-1" [label="decision d-1\nPlan o-1\naccepted"];
  "signal/fb.1" [label="signal fb.1\nbuild_latency_ms"];
  "feedback/fb-1" -> "opportunity/o-1" [label="evidence_for"];
  "opportunity/o-1" -> "decision/d-1" [label="decided_by"];
  "signal/fb.1" -> "opportunity/o-1" [label="evidence_for"];
}
"#
        );
    }

    #[test]
    fn json_lists_nodes_edges_and_the_stamp() {
        let mut graph = small_graph();
        graph.nodes.truncate(2);
        graph.edges.truncate(1);
        assert_eq!(
            graph_json(&graph),
            concat!(
                r#"{"root":"feedback/fb-1","nodes":["#,
                r#"{"entity":"feedback/fb-1","kind":"feedback","id":"fb-1","title":"","team":"platform","status":"processed","depth":0,"via":null},"#,
                r#"{"entity":"opportunity/o-1","kind":"opportunity","id":"o-1","title":"Speed up \"CI\" <fast> & #1 \\o/","team":"platform","status":"planned","depth":1,"via":{"from":"feedback/fb-1","relation":"evidence_for","to":"opportunity/o-1"}}],"#,
                r#""edges":[{"from":"feedback/fb-1","relation":"evidence_for","to":"opportunity/o-1"}],"#,
                r#""truncated":false,"stamp":{"position":42,"checkpoint_tree_size":40,"checkpoint_root":"0f"}}"#
            )
        );
    }

    #[test]
    fn text_lists_nodes_with_depth_and_via() {
        let mut graph = small_graph();
        graph.nodes.truncate(2);
        graph.edges.truncate(1);
        graph.truncated = true;
        assert_eq!(
            graph_text(&graph),
            r#"  0 feedback/fb-1 processed
  1 opportunity/o-1 "Speed up \"CI\" <fast> & #1 \\o/" planned (via feedback/fb-1 -evidence_for-> opportunity/o-1)
edges
  feedback/fb-1 -evidence_for-> opportunity/o-1
truncated: more nodes than --max-nodes
2 nodes, as of position 42, checkpoint tree size 40
"#
        );
    }

    #[test]
    fn directions_parse_short_and_long() {
        assert_eq!(
            parse_direction("up").unwrap(),
            proto::LineageDirection::Upstream
        );
        assert_eq!(
            parse_direction("down").unwrap(),
            proto::LineageDirection::Downstream
        );
        assert_eq!(
            parse_direction("both").unwrap(),
            proto::LineageDirection::Both
        );
        assert!(parse_direction("sideways").is_err());
    }
}
