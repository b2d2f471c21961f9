"""Writes data-samples/broken/: files that trip every error code of `sft-data check`.

broken.jsonl holds one realistic mistake per line (see the comment beside each); the other
files are broken as whole files. Run from the repository root: python3 data-samples/make_broken.py
"""
import gzip
import json
import os

os.makedirs("data-samples/broken", exist_ok=True)
os.chdir("data-samples/broken")


def ok(i):
    return {"messages": [{"role": "user", "content": f"What is {i} squared?"},
                         {"role": "assistant", "content": f"{i} squared is {i * i}."}]}


lines = []


def add(obj):
    lines.append(json.dumps(obj, ensure_ascii=False).encode())


for i in range(3):
    add(ok(i))
lines.append(b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]')  # invalid_json: no closing brace
lines.append('{"messages": [{"role": "user", "content": "caf'.encode() + b"\xe9" + b'"}, {"role": "assistant", "content": "Oui."}]}')  # invalid_utf8: Latin-1
lines.append(b'["user", "Hi", "assistant", "Hello"]')  # not_an_object
add({"question": "What is the capital of France?", "answer": "Paris"})  # unrecognized_row
add({"messages": "[{\"role\": \"user\", \"content\": \"Hi\"}]"})  # wrong_type: the list stored as a JSON string
add({"messages": []})  # empty_messages
add({"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Hello"}]})  # missing_role, no_user_turn
add({"messages": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Hello"}]})  # unknown_role x2, no_assistant_turn
add({"messages": [{"role": "user"}, {"role": "assistant", "content": "Hello"}]})  # missing_content
add({"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hello"}]})  # system_not_first
add({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Thanks!"}]})  # not_ending_with_assistant
add({"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Anyone there?"}, {"role": "assistant", "content": "Yes, hello."}]})  # consecutive_same_role
add({"messages": [{"role": "user", "content": "Say nothing."}, {"role": "assistant", "content": "   "}]})  # empty_target
add({"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})  # empty_content
add({"messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris}"}}]},
                  {"role": "tool", "content": "21C"}, {"role": "assistant", "content": "It is 21C."}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})  # malformed_tool_calls
add({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "tools": "[{\"name\": \"search\""})  # malformed_tools
add({"messages": [{"role": "user", "content": "Weather?"}, {"role": "tool", "content": "21C"}, {"role": "assistant", "content": "21C."}]})  # orphan_tool_message
add({"messages": [{"role": "user", "content": [{"type": "text", "text": "What is in this file?"}, {"type": "spreadsheet", "sheet": "A1"}]},
                  {"role": "assistant", "content": "A table."}]})  # unknown_content_part
add({"messages": [{"role": "user", "content": "Give me advice."}, {"role": "assistant", "content": "Eat a banana! " * 60}]})  # repetitive_content
add({"prompt": "Translate to French: cat", "completion": "chat"})  # mixed_formats (prompt-completion)
add({"prompt": "Translate to French: dog"})  # missing_field
add({"text": "Once upon a time there was a tiny model."})  # mixed_formats (text)
add({"instruction": "Name a primary colour.", "input": "", "output": "Red."})  # needs_conversion
add(ok(1))  # duplicate_row of line 2
for i in range(10, 16):
    add(ok(i))
add({"messages": [{"role": "user", "content": "Write a long essay about rivers."},
                  {"role": "assistant", "content": " ".join(f"River {k} flows through valley {k * 7 % 13} and meets the sea at bay {k * 3 % 11}." for k in range(60))}]})  # long_outlier
add({"prompt": "Label this headline: Stocks rally.", "completion": "Business<|endoftext|>"})  # literal_special_token
open("broken.jsonl", "wb").write(b"\n".join(lines) + b"\n")

open("empty.jsonl", "wb").write(b"")  # empty_file
open("lfs_pointer.parquet", "w").write(  # lfs_pointer
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345678\n")
open("binary.jsonl", "wb").write(bytes(range(256)) * 4)  # binary_file
full = gzip.compress(b"\n".join(json.dumps(ok(i)).encode() for i in range(200)) + b"\n", mtime=0)
open("truncated.jsonl.gz", "wb").write(full[: len(full) // 2])  # unreadable_file

# Misuse fixtures (issue 12), beside the tests rather than here, so that `check
# data-samples/broken` keeps one file per file-level code.
misuse = os.path.join("..", "..", "tests", "fixtures", "misuse")
os.makedirs(misuse, exist_ok=True)
rows = "\n".join(json.dumps(ok(i)) for i in range(3)) + "\n"
# UTF-16 with a byte order mark: named as such, with the iconv line.
open(os.path.join(misuse, "utf16.jsonl"), "wb").write(rows.encode("utf-16"))
# One NUL byte inside line 2 of a text file: that line is reported, not the whole file.
nul = rows.splitlines()
nul[1] = nul[1].replace("squared", "squ\x00ared")
open(os.path.join(misuse, "nul_line2.jsonl"), "wb").write(("\n".join(nul) + "\n").encode())
# gzip of zeros: a real gzip file whose content is binary.
open(os.path.join(misuse, "zeros.jsonl.gz"), "wb").write(gzip.compress(b"\0" * 65536, mtime=0))
# Raw text with Windows line ends: three paragraphs.
open(os.path.join(misuse, "crlf.txt"), "wb").write(b"First paragraph,\r\nline two.\r\n\r\nSecond one.\r\n\r\n\r\nThird.\r\n")
# Self-instruct style (answers in instances[]): looks Alpaca by its `instruction`, but the
# Alpaca conversion rejects every row; check must not suggest it.
self_instruct = [{"id": f"seed_task_{i}", "name": f"task_{i}", "instruction": f"Add {i} and {i}.",
                  "instances": [{"input": "", "output": str(2 * i)}], "is_classification": False}
                 for i in range(4)]
open(os.path.join(misuse, "self_instruct.jsonl"), "w").write("".join(json.dumps(r) + "\n" for r in self_instruct))
# Rows check calls errors (ShareGPT role names in `messages`, an empty reply, no reply at
# all): prepare, show and render must not train or render them.
check_errors = [
    ok(1),
    {"messages": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Hello"}]},
    {"messages": [{"role": "user", "content": "Say nothing."}, {"role": "assistant", "content": "  "}]},
    {"messages": [{"role": "user", "content": "Is anyone there?"}]},
    ok(2),
]
open(os.path.join(misuse, "check_errors.jsonl"), "w").write("".join(json.dumps(r) + "\n" for r in check_errors))
# Preference data: LLaMA-Factory's dpo_en_demo.json shape (ShareGPT conversations with
# chosen/rejected turns), TRL's {prompt, chosen, rejected} (strings and conversational),
# and KTO rows with a boolean label. check says what they are; convert --from preference
# takes the chosen reply, --from kto keeps the desirable rows.
llamafactory = [{"conversations": [{"from": "human", "value": f"Name a prime above {i}."}],
                 "chosen": {"from": "gpt", "value": f"{[2, 3, 5, 7, 11, 13][i]} is one."},
                 "rejected": {"from": "gpt", "value": "I cannot help with that."}} for i in range(3)]
json.dump(llamafactory, open(os.path.join(misuse, "dpo_llamafactory.json"), "w"), indent=1)
trl_preference = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": [{"role": "user", "content": "What colour is the sky?"}],
     "chosen": [{"role": "assistant", "content": "It is blue."}],
     "rejected": [{"role": "assistant", "content": "It is green."}]},
]
open(os.path.join(misuse, "trl_preference.jsonl"), "w").write("".join(json.dumps(r) + "\n" for r in trl_preference))
kto = [{"prompt": "The sky is", "completion": " blue.", "label": True},
       {"prompt": "The sky is", "completion": " green.", "label": False}]
open(os.path.join(misuse, "kto.jsonl"), "w").write("".join(json.dumps(r) + "\n" for r in kto))
