"""The script a user would otherwise write: asyncio + AsyncOpenAI, a semaphore, one CSV out.

    python -m bench.baseline QUESTIONS.csv OUT.csv --provider chat --concurrency 64

Reads OPENAI_API_KEY and OPENAI_BASE_URL like the SDK does. No retries of its own beyond the
SDK's defaults, no thread state, no store: the minimum, as the yardstick for askbatch.
"""

from __future__ import annotations

import argparse
import asyncio
import csv

from openai import AsyncOpenAI


async def ask(client: AsyncOpenAI, provider: str, model: str, question: str) -> tuple[str, int]:
    if provider == "responses":
        conversation = await client.conversations.create()
        response = await client.responses.create(
            model=model, conversation=conversation.id, input=question
        )
        return response.output_text, response.usage.total_tokens
    if provider == "chat":
        completion = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}]
        )
        return completion.choices[0].message.content or "", completion.usage.total_tokens
    # assistants: one streamed create_and_run per question, as askbatch does
    assistant_id = ask.assistant_id  # type: ignore[attr-defined]
    text, total = "", 0
    stream = await client.beta.threads.create_and_run(
        assistant_id=assistant_id,
        thread={"messages": [{"role": "user", "content": question}]},
        stream=True,
    )
    async for event in stream:
        if event.event == "thread.message.completed":
            text = "".join(p.text.value for p in event.data.content if p.type == "text")
        elif event.event == "thread.run.completed" and event.data.usage:
            total = event.data.usage.total_tokens
    return text, total


async def main(args: argparse.Namespace) -> None:
    client = AsyncOpenAI()
    if args.provider == "assistants":
        assistant = await client.beta.assistants.create(model=args.model, name="baseline")
        ask.assistant_id = assistant.id  # type: ignore[attr-defined]
    with open(args.input, encoding="utf-8-sig", newline="") as f:
        questions = [row["question"] for row in csv.DictReader(f)]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(question: str) -> tuple[str, int]:
        async with gate:
            return await ask(client, args.provider, args.model, question)

    answers = await asyncio.gather(*(one(q) for q in questions))
    with open(args.output, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer", "total_tokens"])
        for question, (answer, total) in zip(questions, answers, strict=True):
            writer.writerow([question, answer, total])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--provider", default="chat")
    parser.add_argument("--model", default="gpt-5-mini")
    parser.add_argument("--concurrency", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
