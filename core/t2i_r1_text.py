"""T2I-R1's fixed texts: the system prompt and the semantic-CoT template (docs/ALGORITHM.md §1).

A base module because two layers read them: ``rollout.prompts`` builds the CoT prompt from them, and the tiny
tokenizer (policy/tokenizer.py) learns its words from them. The template is the content of T2I-R1's
data/prompt/reasoning_prompt.txt, verbatim (trailing space included); a test pins it against that file.
"""

T2I_R1_SYSTEM_PROMPT = (
    "You are a helpful assistant that receives an image prompt and generate a visualization of the prompt."
)
T2I_R1_REASONING_TEMPLATE = (
    'You are asked to generate an image based on this prompt: "{}"\n'
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation: "
)
