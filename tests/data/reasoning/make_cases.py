"""Writes cases.json beside this file (python tests/data/reasoning/make_cases.py): the conformance
cases of tests/test_parse_conformance.py, each with its source and what of it is quoted. Expected
boxes are computed here from the frame's formula, not by the parser."""
import json
from pathlib import Path

def norm(box, w, h, scale=1000):
    x1, y1, x2, y2 = box
    return [x1 * w / scale, y1 * h / scale, x2 * w / scale, y2 * h / scale]

def pix(box, w, h, iw, ih):
    x1, y1, x2, y2 = box
    return [x1 * w / iw, y1 * h / ih, x2 * w / iw, y2 * h / ih]

cases = []
def case(**kw):
    cases.append(kw)

# ---- quoted from public sources --------------------------------------------------------------
case(name="QwQ closer only, as quoted in a vLLM issue",
     kind="quoted",
     source="https://github.com/vllm-project/vllm/issues/17144",
     note="The issue's own example of a Qwen thinking model's output without a reasoning parser: the opener is in the template, only '</think>' is generated.",
     family="qwen3-vl", image_size=[1000, 1000], thinking="auto",
     text="hello, my reason to </think> this is my content.",
     expect={"boxes": [], "cut_short": False, "reasoning": "hello, my reason to", "text": "this is my content."})
case(name="Qwen3.5 reasoning cut by the budget (quoted start of a real Qwen3.5 reasoning)",
     kind="quoted prefix",
     source="https://github.com/1CatAI/1Cat-vLLM/issues/18",
     note="Verbatim start of a Qwen3.5 answer with thinking on (the template opened <think>); the source goes on, here it stands for a token budget that ran out mid-reasoning.",
     family="qwen3.5", image_size=[1000, 1000], thinking="on",
     text="Thinking Process:\n\n1.  **Analyze the Request:**\n    *   Input: \"你是谁？\" (Who are you?)\n    * Language: Chinese.\n    * Intent: The user is asking for my identity.",
     expect={"boxes": [], "cut_short": True})
case(name="Qwen3-235B-A22B-Thinking content without <think> (quoted start)",
     kind="quoted prefix",
     source="https://github.com/vllm-project/vllm/issues/31045",
     note="Verbatim start of the 'content' a Thinking checkpoint returned with no reasoning parser: reasoning with no opener. Under --thinking on, a text with no closer is reasoning cut short.",
     family="qwen3-vl", image_size=[1000, 1000], thinking="on",
     text="Okay, the user asked \"how many is 1+1?\" Hmm, this seems like a very basic math question. Maybe they're a young child just learning addition, or perhaps someone testing if I'm paying attention. \n\nI should keep it simple and clear. The answer is obviously 2, but",
     expect={"boxes": [], "cut_short": True})
R1_REASONING = ("<think> The instruction \"在形状菜单中选择闪电形\" translates to \"Select the lightning shape in the shape menu.\" "
                "In the provided screenshot, the lightning shape appears to be located within a specific area of the menu. "
                "The bounding box would encompass the lightning")
case(name="R1-style GUI grounding fine-tune of Qwen2.5-VL, reasoning (quoted start) never closed",
     kind="quoted prefix",
     source="https://github.com/ModalMinds/MM-EUREKA/issues/23",
     note="Verbatim start of a vLLM output of an R1-style Qwen2.5-VL grounding fine-tune (system prompt: '<think> reasoning process here </think> <answer><|box_start|>(x1,y1),(x2,y2)<|box_end|></answer>'); the source goes on, here it stands for reasoning cut short.",
     family="qwen2-vl", image_size=[1929, 1149], thinking="auto",
     text=R1_REASONING,
     expect={"boxes": [], "cut_short": True})
case(name="R1-style answer block after the quoted reasoning",
     kind="quoted reasoning, constructed answer",
     source="https://github.com/ModalMinds/MM-EUREKA/issues/23",
     note="The reasoning above, closed, then an answer in the format the source's system prompt prescribes (coordinates constructed, read on Qwen2-VL's 0-1000 frame).",
     family="qwen2-vl", image_size=[1929, 1149], thinking="auto",
     text=R1_REASONING + " icon in the second row of the shape menu. </think> <answer><|box_start|>(512,230),(540,262)<|box_end|></answer>",
     expect={"boxes": [norm([512, 230, 540, 262], 1929, 1149)], "cut_short": False})

# ---- real answers (vendor cookbooks, as in DESIGN.md) behind constructed reasoning ---------------
CAKE = "```json\n[\n\t{\"bbox_2d\": [765, 394, 891, 550], \"label\": \"top right brown cake\"}\n]\n```"
case(name="draft fenced JSON in the reasoning hides the final fenced answer (Qwen2.5-VL cookbook answer)",
     kind="constructed reasoning, quoted answer",
     source="https://github.com/QwenLM/Qwen2.5-VL/blob/main/cookbooks/spatial_understanding.ipynb",
     note="The answer is the cookbook's (1024x1024 image fed as 1036x1036, pixels of the resized input); the reasoning with its own ```json draft is constructed: before issue 20 the first fence (the draft) was read and the answer lost.",
     family="qwen2.5-vl", image_size=[1024, 1024], thinking="auto",
     text="The user wants the top right brown cake. A first guess:\n```json\n[{\"bbox_2d\": [700, 380, 850, 520], \"label\": \"cake\"}]\n```\nThat box cuts the cake's right edge; widen it.\n</think>\n\n" + CAKE,
     expect={"boxes": [pix([765, 394, 891, 550], 1024, 1024, 1036, 1036)], "cut_short": False})
APPLES = "<ref> Two apples</ref><box>(302,257),(582,671)</box><box>(603,252),(878,642)</box> and<ref> a bowl</ref><box>(2,269),(304,674)</box>"
case(name="Qwen-VL tag answer in an R1 answer block, draft tags in the reasoning (Qwen-VL README answer)",
     kind="constructed reasoning, quoted answer",
     source="https://github.com/QwenLM/Qwen-VL/blob/master/TUTORIAL.md",
     note="The answer is Qwen-VL's own grounded caption; the reasoning holding a draft <box> is constructed.",
     family="qwen-vl", image_size=[1000, 800], thinking="auto",
     text="<think>Apples first: <ref>apple</ref><box>(300,250),(580,670)</box>, then the bowl.</think><answer>" + APPLES + "</answer>",
     expect={"boxes": [norm([302, 257, 582, 671], 1000, 800), norm([603, 252, 878, 642], 1000, 800), norm([2, 269, 304, 674], 1000, 800)], "cut_short": False})

# ---- shapes reported in public threads, text constructed -----------------------------------------
case(name="Qwen3.5 closer only, reasoning in the content",
     kind="reported shape, constructed text",
     source="https://github.com/vllm-project/vllm-ascend/issues/7061",
     note="Qwen3.5-397B-A17B output has only '</think>' (the template opens <think>); with an old reasoning parser the content held the reasoning and the closer. 0-1000 frame.",
     family="qwen3.5", image_size=[1920, 1080], thinking="on",
     text="The user wants every traffic light. I see one at about [812, 40, 850, 160] but that may be a sign.\n</think>\n\n```json\n[\n  {\"bbox_2d\": [815, 42, 848, 158], \"label\": \"traffic light\"},\n  {\"bbox_2d\": [120, 60, 150, 170], \"label\": \"traffic light\"}\n]\n```",
     expect={"boxes": [norm([815, 42, 848, 158], 1920, 1080), norm([120, 60, 150, 170], 1920, 1080)], "cut_short": False})
case(name="Qwen3.5 <think> without </think>",
     kind="reported shape, constructed text",
     source="https://github.com/vllm-project/vllm-ascend/issues/7061",
     note="A comment reports outputs 'with <think> but without </think>': reasoning cut short, whatever boxes it holds.",
     family="qwen3.5", image_size=[1920, 1080], thinking="auto",
     text="<think>\nThe cup is left of the laptop: [{\"bbox_2d\": [100, 500, 220, 700], \"label\": \"cup\"}]. Let me check the handle",
     expect={"boxes": [], "cut_short": True})
case(name="Qwen3-VL-235B-Thinking closer only",
     kind="reported shape, constructed text",
     source="https://github.com/QwenLM/Qwen3-VL/issues/1504",
     note="'only a closing tag' in the response of Qwen3-VL-235B-Thinking served by vLLM; QwenLM/Qwen3-VL#1750: the opener is in the chat template.",
     family="qwen3-vl", image_size=[640, 480], thinking="auto",
     text="Point to the dog. It is near the centre, roughly (500, 500).\n</think>\n\n[{\"point_2d\": [512, 620], \"label\": \"dog\"}]",
     expect={"points": [[512 * 640 / 1000, 620 * 480 / 1000]], "boxes": [], "cut_short": False})
case(name="Qwen3.5-plus doubled opener",
     kind="reported shape, constructed text",
     source="https://github.com/hotovo/aider-desk/issues/704",
     note="Qwen 3.5-plus answered with '<think><think>' tags.",
     family="qwen3.5", image_size=[1000, 1000], thinking="auto",
     text="<think><think>Draft: [{\"bbox_2d\": [1, 1, 9, 9]}]</think>\n[{\"bbox_2d\": [100, 200, 300, 400], \"label\": \"sign\"}]",
     expect={"boxes": [[100.0, 200.0, 300.0, 400.0]], "cut_short": False})
case(name="coordinates past 1000 on the 0-1000 frame are clipped and counted",
     kind="reported shape, constructed text",
     source="https://github.com/QwenLM/Qwen3.8-Flash-Next/issues/4",
     note="A user reports predicted coordinates above 1000; a Qwen maintainer answers they are still relative, on [0, 1000].",
     family="qwen3-vl", image_size=[2000, 1000], thinking="auto",
     text="</think>\n[{\"bbox_2d\": [900, 100, 1003, 1012], \"label\": \"edge\"}]",
     expect={"boxes": [[1800.0, 100.0, 2000.0, 1000.0]], "cut_short": False, "clipped": 2})

# ---- the shapes of issue 20, constructed -------------------------------------------------------
case(name="budget cut mid-reasoning after a draft box, template-opened",
     kind="constructed", source="issue 20",
     note="No closer under --thinking on: the draft must not come out as an answer.",
     family="qwen3-vl", image_size=[800, 600], thinking="on",
     text="The person on the left. Candidate: ```json\n[{\"bbox_2d\": [10, 20, 300, 900], \"label\": \"person\"}]\n``` but the arm is cut, so",
     expect={"boxes": [], "cut_short": True})
case(name="two reasoning blocks, split at the last closer",
     kind="constructed", source="issue 20",
     family="qwen3-vl", image_size=[800, 600], thinking="auto",
     text="<think>first [{\"bbox_2d\": [1, 2, 3, 4]}]</think><think>second [{\"bbox_2d\": [5, 6, 7, 8]}]</think>[{\"bbox_2d\": [100, 100, 500, 500], \"label\": \"x\"}]",
     expect={"boxes": [norm([100, 100, 500, 500], 800, 600)], "cut_short": False})
case(name="R1 answer block cut off by the token limit keeps its complete items",
     kind="constructed", source="issue 20",
     family="qwen2.5-vl", image_size=[1024, 1024], input_size=[1036, 1036], thinking="auto",
     text="<think>two cakes</think><answer>```json\n[{\"bbox_2d\": [765, 394, 891, 550], \"label\": \"cake\"}, {\"bbox_2d\": [10, 20,",
     expect={"boxes": [pix([765, 394, 891, 550], 1024, 1024, 1036, 1036)], "cut_short": False})
case(name="thinking off: a stray opener is not reasoning",
     kind="constructed", source="issue 20",
     family="qwen3-vl", image_size=[1000, 1000], thinking="off",
     text="<think>[{\"bbox_2d\": [10, 20, 30, 40], \"label\": \"a\"}]",
     expect={"boxes": [[10.0, 20.0, 30.0, 40.0]], "cut_short": False})
case(name="the empty reasoning block a template writes with thinking off",
     kind="constructed", source="issue 20",
     note="Qwen3.5's template writes '<think>\\n\\n</think>\\n\\n' itself when enable_thinking is false; a model that repeats it has no reasoning.",
     family="qwen3-vl", image_size=[1000, 1000], thinking="off",
     text="<think>\n\n</think>\n\n[{\"bbox_2d\": [10, 20, 30, 40], \"label\": \"a\"}]",
     expect={"boxes": [[10.0, 20.0, 30.0, 40.0]], "cut_short": False, "reasoning": None})
case(name="server reasoning_content apart from the content",
     kind="constructed", source="issue 20",
     note="A server with a reasoning parser returns the reasoning as reasoning_content: parse(content, reasoning=...).",
     family="qwen3-vl", image_size=[1000, 1000], thinking="on",
     reasoning_apart="Draft [{\"bbox_2d\": [1, 2, 3, 4]}] then check.",
     text="[{\"bbox_2d\": [10, 20, 30, 40], \"label\": \"a\"}]",
     expect={"boxes": [[10.0, 20.0, 30.0, 40.0]], "cut_short": False})
case(name="server reasoning_content with an empty content: cut short",
     kind="constructed", source="issue 20",
     family="qwen3-vl", image_size=[1000, 1000], thinking="on",
     reasoning_apart="Still looking at [{\"bbox_2d\": [1, 2, 3, 4]}]",
     text="",
     expect={"boxes": [], "cut_short": True})

(Path(__file__).parent / "cases.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1), encoding="utf-8")

